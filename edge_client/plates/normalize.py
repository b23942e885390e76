"""Kept until every importer moves: the normaliser lives in ``alpr_common.plate_text``."""

from alpr_common.plate_text import fold_lookalikes, normalize

__all__ = ["fold_lookalikes", "normalize"]
