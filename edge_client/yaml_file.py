"""Kept for imports written before the re-layout: ``alpr_common.yaml_file``."""

from alpr_common.yaml_file import read_yaml

__all__ = ["read_yaml"]
