"""Every activation pattern of tiny data sets: the exhaustive set S for which the restricted
program's optimum is the global optimum of the non-convex training problem (MATH.md section 3).

Exact enumeration of hyperplane arrangements is exponential in rank(X) (paper, section 4), so it
is offered only where it is cheap and exact: feature dimension d' <= 2 (the bias column
included), where the arrangements of n points by lines through the origin are read off the
2n critical angles. For depth 3 every nonzero D2 in {0, 1}^n is included: a pattern whose D2 is
not realisable still maps every point of its cone to a real network with the same objective
(MATH.md section 4), so the superset keeps the optimum exact.
"""

from __future__ import annotations

import itertools
import math

import torch

from .._checks import check_architecture, check_int
from ..rows import Rows
from .set import PatternSet


def arrangements(Xf: torch.Tensor) -> torch.Tensor:
    """All distinct D = 1[Xf u >= 0] for u in R^{d'}, d' <= 2, as a bool (H, n) tensor.

    Patterns at the critical angles themselves are omitted: each one's cone lies in the closure
    of a neighbouring arc's cone, and a tie row contributes x_i . u = 0 either way.
    """
    Xf = torch.as_tensor(Xf, dtype=torch.float64)
    n, d = Xf.shape
    if d == 1:
        U = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
    elif d == 2:
        base = torch.atan2(Xf[:, 1], Xf[:, 0])
        nonzero = Xf.norm(dim=1) > 0
        crit = torch.cat([base[nonzero] + math.pi / 2, base[nonzero] - math.pi / 2])
        crit = torch.remainder(crit, 2 * math.pi).sort().values
        if crit.numel() == 0:
            mids = torch.tensor([0.0], dtype=torch.float64)
        else:
            nxt = torch.cat([crit[1:], crit[:1] + 2 * math.pi])
            mids = 0.5 * (crit + nxt)
        U = torch.stack([torch.cos(mids), torch.sin(mids)], dim=1)
    else:
        raise ValueError(
            f"exact enumeration is implemented for feature dimension d' <= 2 (got {d}); it is "
            "exponential in rank(X) in general: use sample_patterns for larger data"
        )
    D = (Xf @ U.T >= 0).T
    return torch.unique(D, dim=0)


def enumerate_patterns(X, hidden: int, depth: int = 3, bias: bool = False,
                       max_patterns: int = 200_000) -> PatternSet:
    """The exhaustive pattern set for tiny data (d' <= 2; for depth 3 also n <= 12).

    Neurons within a branch are unordered, so first-layer columns (D1_j, s_j) are taken as
    multisets of size m. Patterns with an empty prediction mask are dropped. Raises ValueError
    when the set would exceed ``max_patterns``.
    """
    check_int("hidden", hidden, minimum=1)
    check_architecture(depth, hidden)
    Xf = Rows.prepare(X, bias=bias, dtype=torch.float64).features
    n = Xf.shape[0]
    H = arrangements(Xf)
    columns = [(h, s) for h in range(H.shape[0]) for s in (1, -1)]
    if depth == 2:
        D1 = H.repeat_interleave(2, dim=0)[:, :, None]
        sig = torch.tensor([1, -1] * H.shape[0], dtype=torch.int8)
        pats = PatternSet(D1, None, sig[:, None].clone(), sig, bias)
        return pats.select(~pats.is_degenerate())
    if n > 12:
        raise ValueError(f"depth-3 enumeration ranges over all 2^n second-layer patterns; n={n} > 12")
    combos = list(itertools.combinations_with_replacement(range(len(columns)), hidden))
    D2_all = torch.tensor(list(itertools.product([False, True], repeat=n))[1:], dtype=torch.bool)
    total = len(combos) * D2_all.shape[0] * 2
    if total > max_patterns:
        raise ValueError(f"the exhaustive set would have {total} patterns (> max_patterns={max_patterns})")
    D1_c = torch.stack([torch.stack([H[columns[c][0]] for c in combo], dim=1) for combo in combos])
    s_c = torch.tensor([[columns[c][1] for c in combo] for combo in combos], dtype=torch.int8)
    C, T = len(combos), D2_all.shape[0]
    D1 = D1_c[:, None].expand(C, T, n, hidden).reshape(C * T, n, hidden)
    D2 = D2_all[None].expand(C, T, n).reshape(C * T, n)
    s = s_c[:, None].expand(C, T, hidden).reshape(C * T, hidden)
    D1, D2 = torch.cat([D1, D1]), torch.cat([D2, D2])
    sig = torch.cat([torch.ones(C * T, dtype=torch.int8), -torch.ones(C * T, dtype=torch.int8)])
    # s_pj = sig_p * sign(w2_pj): both signs of w2 are already enumerated, so flip with sig
    s = torch.cat([s, -s])
    pats = PatternSet(D1.contiguous(), D2.contiguous(), s.contiguous(), sig, bias)
    return pats.select(~pats.is_degenerate())
