"""The ``"fit"`` method: the network's own dual point with fitted, then refined, multipliers.

For the dual point v of :mod:`.dual_point` (the network's residual, branches rescaled), every
pattern gets multipliers by the ADMM fit on its support rows (:mod:`.support`,
:mod:`.multiplier_fit`); where the pattern's B_p limits the bound and m d' is small, the
cutting-plane refinement (:mod:`.refinement`) then computes lambda_p(v) exactly. A caller's
multipliers are one more candidate per pattern. The result is the best B_p per pattern for this
one v: tight only when v is near the dual optimum (a network at a restricted optimum).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch

from ..duality import pattern_bounds
from ..program import RestrictedProgram
from ..rows import RowSync
from .cone_rows import pattern_block, pattern_chunks
from .multiplier_fit import default_iterations, fit_multipliers
from .refinement import refine_bounds, refinement_floor, seed_rows
from .support import all_rows, support_rows

#: Default number of support rows per pattern for the multiplier fit.
DEFAULT_SUPPORT = 4096
#: Refinement runs by default when a pattern's cutting-plane program has at most this many
#: variables (m d'): each round is an interior-point solve in that many variables holding the
#: cone rows of about 2 m d' data rows, so its cost grows steeply with m d'.
REFINE_MAX_VARIABLES = 2000
#: Fit iterations when the refinement follows (the fit then only seeds it).
SEED_ITERATIONS = 200
#: Above this much work per fit iteration (P k m d') without refinement, the fit runs in float32.
FLOAT32_FIT_WORK = 1e9


@dataclass(frozen=True)
class FitPlan:
    """The multiplier fit's settings, resolved from certify's tuning keywords and the sizes."""

    support: int  # rows per pattern carrying multipliers
    all_rows: bool  # every row carries multipliers (n <= support)
    refine: bool
    iterations: int
    dtype: torch.dtype


def fit_plan(P: int, n_total: int, m: int, d: int, iterations, support, refine, fit_dtype) -> FitPlan:
    """The :class:`FitPlan` for certify's keywords (``None`` / ``"auto"``: chosen by size)."""
    k = min(support, n_total) if support and support > 0 else n_total
    do_refine = bool(refine) if refine != "auto" else (m * d <= REFINE_MAX_VARIABLES)
    if iterations is None:
        iterations = default_iterations(P, k, m, d)
        if do_refine:
            iterations = min(iterations, SEED_ITERATIONS)
    if fit_dtype is None:
        big = P * k * m * d > FLOAT32_FIT_WORK
        fit_dtype = torch.float32 if big and not do_refine else torch.float64
    return FitPlan(k, n_total <= k, do_refine, iterations, fit_dtype)


def _fitted_bounds(program: RestrictedProgram, g: torch.Tensor, plan: FitPlan, sync: RowSync):
    """(B (P,) from the fitted multipliers, {pattern: refinement seed rows} when refining)."""
    Xf, S = program.features, program.patterns
    P, m, d = program.shape
    B = torch.empty(P, dtype=g.dtype, device=g.device)
    seeds = {}
    scoring = None if plan.all_rows else program.with_dtype(plan.dtype)
    ids_local = sync.row_ids(Xf.shape[0], Xf.device)
    for sl in pattern_chunks(P, plan.support * max(m, d)):
        if plan.all_rows:
            rows = all_rows(Xf, S, sync, sl)
        else:
            rows = support_rows(pattern_block(scoring, sl), g[sl], Xf, sync, plan.support, ids_local)
        B[sl], mu1, mu2 = fit_multipliers(g[sl], rows, S.s[sl], S.sig[sl], plan.iterations, plan.dtype)
        if plan.refine:
            seeds.update(zip(range(sl.start, sl.stop), seed_rows(rows, mu1, mu2, m, d)))
    return B, seeds


def fit_bounds(program: RestrictedProgram, dual, path: torch.Tensor, contains: torch.Tensor, plan: FitPlan,
               given: Optional[Tuple[torch.Tensor, Optional[torch.Tensor]]], refine_rounds: int,
               sync: RowSync) -> Tuple[torch.Tensor, dict, int]:
    """(B (P,) for the dual point ``dual`` (:class:`~.dual_point.DualPoint`), info, patterns refined).

    ``path`` (K,) are the branches' path norms and ``contains`` which branches lie in S (they
    give the refinement its floor); ``given`` = (mu1 (P', n, m), mu2) >= 0 for the first P'
    patterns, a caller's candidate.
    """
    P, m, d = program.shape
    beta = program.beta
    g = sync.sum(program.predict_adjoint(dual.v))  # A^T v over all rows
    B, seeds = _fitted_bounds(program, g, plan, sync)
    if given is not None and given[0].shape[0]:
        Pm = given[0].shape[0]
        mine = pattern_bounds(pattern_block(program, slice(0, Pm)), dual.v, given[0], given[1], sync)
        B[:Pm] = torch.minimum(B[:Pm], mine)
    # the exact value where B_p limits the bound
    tau, rho_floor = refinement_floor(dual.vy, dual.vv, beta, dual.branch_corr, path, contains)
    refined = 0
    if plan.refine:
        refined = refine_bounds(program, g, B, max(tau, rho_floor), seeds, sync, refine_rounds,
                                add_rows=max(16, 2 * m * d))
    info = {"tau": tau, "rho_floor": rho_floor, "iterations": plan.iterations, "support": plan.support}
    return B, info, refined
