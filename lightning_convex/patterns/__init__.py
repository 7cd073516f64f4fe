"""Activation patterns (MATH.md section 2): the set, reading them off weights, sampling them
(Remark 3), and the exhaustive arrangements of tiny data."""

from .arrangements import arrangements, enumerate_patterns
from .reading import patterns_of, read_branches, sign_of
from .sampling import draw_branches, private_generator, sample_patterns
from .set import PatternSet, concatenate, union

__all__ = [
    "PatternSet",
    "arrangements",
    "concatenate",
    "draw_branches",
    "enumerate_patterns",
    "patterns_of",
    "private_generator",
    "read_branches",
    "sample_patterns",
    "sign_of",
    "union",
]
