"""Kept for the tests: the wiring lives in :mod:`flexctl.twins`."""

from flexctl.twins import FAMILY, KINDS, Pair, make_server, twin_pair

__all__ = ["FAMILY", "KINDS", "Pair", "make_server", "twin_pair"]
