"""Duality-gap certificates (MATH.md sections 5, 6 and 8)."""

from ..rows import RowSync
from .certificate import DEFAULT_MARGIN, Certificate, certify, check_certify_options
from .search import search_violations

__all__ = ["Certificate", "DEFAULT_MARGIN", "RowSync", "certify", "check_certify_options", "search_violations"]
