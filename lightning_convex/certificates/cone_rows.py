"""The cone rows of a block of patterns: over all rows, and in row form on rows chosen per pattern.

:class:`~lightning_convex.program.RestrictedProgram` applies G and G^T over all rows of the data,
the same rows for every pattern; :func:`pattern_block` restricts it to a block of patterns. The
certificate's multiplier fit, refinement and membership test work on a few rows that differ
from pattern to pattern (or on K branches at once), so they need the same signs in a batched row
form (MATH.md section 3):

    first-layer row (i, j):   s_pj (2 D1_pij - 1) x_i . q_pj >= 0
    second-layer row i:       sig_p (2 D2_pi - 1) sum_j D1_pij x_i . q_pj >= 0

and G^T mu in row form, s (2 D1 - 1) mu1 + sig (2 D2 - 1) D1 mu2, whose product with the rows
gives the (m, d') block of G^T mu (both formulas live in :mod:`lightning_convex.program`:
``row_signs``, ``row_weights``).
"""

from __future__ import annotations

from typing import Iterator

from ..patterns import PatternSet
from ..program import RestrictedProgram
from ..rows import ENTRY_CHUNK

#: Largest number of (pattern, row, neuron) entries a certificate step materialises at once: half
#: the operators' chunk, because the multiplier fit keeps about a dozen such tensors alive per
#: block of patterns where an operator keeps a few.
CERTIFICATE_CHUNK = ENTRY_CHUNK // 2


def pattern_chunks(P: int, per_pattern: int) -> Iterator[slice]:
    """Slices of the P patterns holding at most :data:`CERTIFICATE_CHUNK` entries each."""
    step = max(1, CERTIFICATE_CHUNK // max(1, per_pattern))
    for start in range(0, P, step):
        yield slice(start, min(P, start + step))


def pattern_block(program: RestrictedProgram, sl: slice) -> RestrictedProgram:
    """The program over the patterns ``sl`` of ``program`` (views of its masks; itself when that
    is every pattern)."""
    if sl.start in (0, None) and sl.stop >= program.P:
        return program
    S = program.patterns
    block = PatternSet(S.D1[sl], None if S.D2 is None else S.D2[sl], S.s[sl], S.sig[sl], S.bias)
    return RestrictedProgram(program.rows, None, block, program.beta, dtype=program.dtype)
