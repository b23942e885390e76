"""Shared runtime pieces used by more than one process (edge client, gate): the config
base and its error type, event sinks, plate-text normalisation, backoff, box geometry.

Imports nothing from ``edge_client``, ``gate`` or ``ensemble``.
"""
