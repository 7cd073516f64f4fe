"""Duality-gap certificates (MATH.md sections 5, 6 and 8)."""

from .certificate import Certificate, RowSync, certify, search_violations

__all__ = ["Certificate", "RowSync", "certify", "search_violations"]
