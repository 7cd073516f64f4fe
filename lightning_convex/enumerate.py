"""The exhaustive pattern set of tiny data (``d' <= 2``); lives in :mod:`lightning_convex.patterns`."""

from .patterns.arrangements import arrangements, enumerate_patterns

__all__ = ["arrangements", "enumerate_patterns"]
