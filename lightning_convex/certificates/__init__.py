"""Duality-gap certificates (MATH.md sections 5, 6 and 8)."""

from ..rows import RowSync
from .certificate import Certificate, certify
from .search import search_violations

__all__ = ["Certificate", "RowSync", "certify", "search_violations"]
