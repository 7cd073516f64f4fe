"""Duality-gap certificates for a parallel ReLU network (MATH.md sections 5, 6 and 8).

:func:`certify` returns a :class:`Certificate`: the network's objective J(theta), a VALID lower
bound on OPT(S), the optimum of the restricted convex program over a pattern set S (MATH.md
section 3), their gap, and optionally the result of a search for strict descent directions
outside S (section 6).

The bound is the section-5 bound of :mod:`lightning_convex.duality`: for any dual point v and any
cone multipliers mu >= 0, B_p(v, mu) = max_j ||(A^T v + G^T mu)_pj|| bounds lambda_p(v), and
g(c v) with c = clip(v.y / ||v||^2, 0, beta / max_p B_p) is <= OPT(S). Validity never depends on
how v and mu were found, so every step below only has to make the bound tight; the final B_p are
evaluated in float64 from the multipliers that are used. The steps, one module each:

1. The dual point v (:mod:`.dual_point`): by default the residual of the network with each
   branch rescaled optimally; after a solve the solver's residual is tried too.
2. The set S: the network's own active set, a given set (:mod:`.membership` checks that the
   network lies in it), plus sampled patterns.
3. Multipliers per pattern: support rows (:mod:`.support`), an ADMM fit on them
   (:mod:`.multiplier_fit`), then, where the pattern's B_p limits the bound and m d' is small,
   the exact value by cutting planes (:mod:`.refinement`). A solver's own multipliers are one
   more candidate; at the restricted optimum they are exact.
4. Optionally the search outside S (:mod:`.search`).

Every sum over rows goes through a :class:`~lightning_convex.rows.RowSync`, so the same code
certifies data split in row shards over processes (the DDP callback): sums are all-reduced and
the few rows a pattern's support or refinement needs are gathered, making the result equal to the
single-process one up to floating-point summation order.

Scope (section 8): the gap bounds J(theta) - OPT(S), where S is the network's own active set,
a given set, plus any sampled patterns; ``scope`` says which. It is a global statement only when
S holds every hyperplane arrangement (``exhaustive=True``, the caller's claim).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import NamedTuple, Optional

import torch

from .._checks import check_beta, check_int
from ..duality import lower_bound, pattern_bounds, program_bound, relative_gap
from ..mapping import branch_path_norms
from ..model import ParallelReLU, float64_parameters, network_rows, regularizer
from ..patterns import PatternSet, concatenate, private_generator, read_branches, sample_patterns
from ..program import RestrictedProgram
from ..rows import Rows, RowSync
from .cone_rows import pattern_block, pattern_chunks
from .dual_point import dual_point as make_dual_point
from .membership import branch_membership, check_membership
from .multiplier_fit import default_iterations, fit_multipliers
from .refinement import refine_bounds, refinement_floor, seed_rows
from .search import search_outside
from .support import all_rows, support_rows

__all__ = ["Certificate", "certify"]

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


# ------------------------------------------------------------------------------------------------
# Result
# ------------------------------------------------------------------------------------------------
@dataclass
class Certificate:
    """A duality-gap certificate (MATH.md section 5), all values in the paper's sum form.

    Attributes:
        primal: J(theta) = 1/2 ||f(X) - y||^2 + beta R(theta), float64.
        lower_bound: a valid lower bound on OPT(S), the restricted optimum over the pattern set S.
        gap: primal - lower_bound, an upper bound on J(theta) - OPT(S) when the network lies in
            S (``contains_network``). Negative only through solver tolerances or a network that
            sits (within ``membership_tol``) outside its cones: an inexact iterate, never a
            better-than-optimal point.
        relative_gap: gap / primal (0 when both are 0).
        scope: the set S: ``"active set"``, ``"given set"``, ``"... + N sampled"``, or
            ``"global"`` (only with ``exhaustive=True``).
        num_patterns: |S|.
        patterns: the set S itself (the network's patterns or the given set, then the sampled
            ones), on the rows certified, so a caller can check the claim or reuse the set.
        max_violation: largest r . f_theta'(X) / beta over unit-path-norm branches found by the
            search of section 6 (> 1 proves the network is not globally optimal); NaN without a
            search.
        violating_patterns: the patterns (on the given rows) of the branches with
            max_violation > 1, most violating first, for a solver to add; ``None`` without one.
        violating_weights: (W1 (V, d', m), w2 (V, m) or None, w3 (V,)) of those branches, unit
            path norm, float64 on the network's device (patterns on other rows: read them there).
        pattern_bounds: B_p / beta per pattern (float64, CPU): > 1 where the network's residual
            violates pattern p's dual constraint.
        dual_scale: the c of section 5 applied to the residual.
        contains_network: whether every branch lies in a cone of S.
        n: number of rows (all shards).
        seconds: wall time.
        refined: patterns refined by the exact cutting-plane step.
    """

    primal: float
    lower_bound: float
    gap: float
    relative_gap: float
    scope: str
    num_patterns: int
    patterns: Optional[PatternSet] = None
    max_violation: float = float("nan")
    violating_patterns: Optional[PatternSet] = None
    violating_weights: Optional[tuple] = None
    pattern_bounds: Optional[torch.Tensor] = None
    dual_scale: float = 0.0
    contains_network: bool = True
    n: int = 0
    seconds: float = 0.0
    refined: int = 0
    info: dict = field(default_factory=dict)

    def metrics(self) -> dict:
        """The logged values as plain floats (``max_violation`` only after a search)."""
        out = {
            "primal": self.primal,
            "lower_bound": self.lower_bound,
            "gap": self.gap,
            "relative_gap": self.relative_gap,
        }
        if not math.isnan(self.max_violation):
            out["max_violation"] = self.max_violation
        return out

    def __repr__(self) -> str:
        extra = "" if math.isnan(self.max_violation) else f", max_violation={self.max_violation:.4g}"
        return (
            f"Certificate(primal={self.primal:.10g}, lower_bound={self.lower_bound:.10g}, "
            f"gap={self.gap:.3e}, relative_gap={self.relative_gap:.3e}, scope={self.scope!r}, "
            f"num_patterns={self.num_patterns}{extra})"
        )



# ------------------------------------------------------------------------------------------------
# Steps of certify
# ------------------------------------------------------------------------------------------------
class _NetworkPass(NamedTuple):
    """One pass of the network over the rows: J, the residual and the branch statistics."""

    W1: torch.Tensor
    w2: Optional[torch.Tensor]
    w3: torch.Tensor
    own: PatternSet  # the network's active set on these rows
    outputs: torch.Tensor  # (K, n_local) branch outputs f_k(X)
    residual: torch.Tensor  # y - f(X), (n_local,)
    n_total: int
    primal: float
    path: torch.Tensor  # R_k, (K,)
    Fy: torch.Tensor  # f_k . y over all rows, (K,)
    gram: torch.Tensor  # f_k . f_l over all rows, (K, K)


def _network_pass(net: ParallelReLU, rows: Rows, beta: float, sync: RowSync) -> _NetworkPass:
    W1, w2, w3 = float64_parameters(net)
    Xf, y = rows.features, rows.y
    own, outputs = read_branches(Xf, W1, w2, w3, net.bias, outputs=True)
    K = outputs.shape[0]
    residual = y - outputs.sum(dim=0)
    count = torch.tensor(float(Xf.shape[0]), dtype=Xf.dtype, device=Xf.device)
    stats = sync.sum(torch.cat([
        torch.stack([residual.square().sum(), count]),
        outputs @ y,
        (outputs @ outputs.T).reshape(-1),
    ]))
    primal = 0.5 * float(stats[0]) + beta * float(regularizer(W1, w2, w3, net.regularization))
    return _NetworkPass(W1, w2, w3, own, outputs, residual, int(round(float(stats[1]))), primal,
                        branch_path_norms(W1, w2, w3), stats[2 : 2 + K], stats[2 + K :].reshape(K, K))


def _pattern_set(net: ParallelReLU, rows: Rows, network: _NetworkPass, patterns, extra_patterns: int,
                 generator, exhaustive: bool, strict: bool, membership_tol: float, sync: RowSync):
    """(S, scope, contains (K,) bool: which branches lie in a cone of S)."""
    device = rows.device
    contains = torch.ones(net.branches, dtype=torch.bool, device=device)
    if patterns is None:
        S, scope = network.own, "active set"
    else:
        if not isinstance(patterns, PatternSet):
            raise TypeError(f"patterns must be a PatternSet, got {type(patterns).__name__}")
        expected = (rows.n, net.hidden, net.depth, net.bias)
        actual = (patterns.n, patterns.hidden, patterns.depth, patterns.bias)
        if expected != actual:
            raise ValueError(
                f"patterns are for (n, m, depth, bias) = {actual}, but X and the network give {expected}"
            )
        if len(patterns) == 0:
            raise ValueError("the pattern set is empty")
        S, scope = patterns.to(device), "given set"
        contains = branch_membership(rows.features, network.W1, network.w2, network.w3, network.outputs,
                                     rows.y.abs().max(), S, sync, membership_tol)
        check_membership(contains, membership_tol, strict)
    if extra_patterns:
        sampled = sample_patterns(rows, extra_patterns, net.hidden, generator=generator, depth=net.depth,
                                  bias=net.bias, sync=sync)
        S = concatenate([S, sampled])
        scope = f"{scope} + {len(sampled)} sampled"
    if exhaustive:
        scope = "global"
    return S, scope, contains


@dataclass(frozen=True)
class _FitPlan:
    """The multiplier fit's settings, resolved from certify's tuning keywords and the sizes."""

    support: int  # rows per pattern carrying multipliers
    all_rows: bool  # every row carries multipliers (n <= support)
    refine: bool
    iterations: int
    dtype: torch.dtype


def _fit_plan(P: int, n_total: int, m: int, d: int, iterations, support, refine, fit_dtype) -> _FitPlan:
    k = min(support, n_total) if support and support > 0 else n_total
    do_refine = bool(refine) if refine != "auto" else (m * d <= REFINE_MAX_VARIABLES)
    if iterations is None:
        iterations = default_iterations(P, k, m, d)
        if do_refine:
            iterations = min(iterations, SEED_ITERATIONS)
    if fit_dtype is None:
        big = P * k * m * d > FLOAT32_FIT_WORK
        fit_dtype = torch.float32 if big and not do_refine else torch.float64
    return _FitPlan(k, n_total <= k, do_refine, iterations, fit_dtype)


def _fitted_bounds(program: RestrictedProgram, g: torch.Tensor, plan: _FitPlan, sync: RowSync):
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


def _given_multipliers(multipliers, P: int, n_local: int, m: int, device):
    """A caller's (mu1 (P', n, m), mu2 (P', n) or None) for the first P' <= P patterns, in float64
    with negative entries clipped (any mu >= 0 is valid; negative entries are solver noise)."""
    mu1, mu2 = multipliers
    mu1 = torch.as_tensor(mu1).to(device=device, dtype=torch.float64)
    if mu1.dim() != 3 or mu1.shape[0] > P or tuple(mu1.shape[1:]) != (n_local, m):
        raise ValueError(
            f"multipliers mu1 must have shape (P, {n_local}, {m}) with P <= {P}, got {tuple(mu1.shape)}"
        )
    mu1 = mu1.clamp_min(0)
    if mu2 is not None:
        mu2 = torch.as_tensor(mu2).to(device=device, dtype=torch.float64).clamp_min(0)
    return mu1, mu2


# ------------------------------------------------------------------------------------------------
# certify
# ------------------------------------------------------------------------------------------------
@torch.no_grad()
def certify(
    net: ParallelReLU,
    X,
    y,
    beta,
    patterns: Optional[PatternSet] = None,
    extra_patterns: int = 0,
    search: int = 0,
    generator: Optional[torch.Generator] = None,
    multipliers=None,
    solution=None,
    *,
    iterations: Optional[int] = None,
    support: int = DEFAULT_SUPPORT,
    refine="auto",
    refine_rounds: int = 25,
    search_steps: int = 100,
    dual_point: str = "scaled",
    fit_dtype: Optional[torch.dtype] = None,
    exhaustive: bool = False,
    strict: bool = True,
    membership_tol: float = 1e-6,
    sync: Optional[RowSync] = None,
) -> Certificate:
    """Certify ``net`` on (X, y): J(theta), a valid lower bound on OPT(S) and the gap.

    Args:
        net: the :class:`ParallelReLU` (its device is where everything runs, in float64).
        X: (n, d) data without the bias column (moved to the network's device); y: (n,) targets.
        beta: the regularization weight of J (sum form, MATH.md section 1).
        patterns: the set S; ``None`` is the network's own active set. A given set must contain,
            for every branch, a cone the branch lies in (checked by feasibility to
            ``membership_tol``): otherwise ``ValueError`` (``strict=True``) or a certificate with
            ``contains_network=False`` whose gap no longer bounds J - OPT(S) (``strict=False``).
        extra_patterns: add this many random patterns (MATH.md section 3, Remark 3) to S.
        search: number of random starts of the descent-direction search (section 6); 0 skips it.
        generator: torch generator for the sampled patterns and the search starts (the same seed
            on every process under DDP); without one a private generator seeded from
            ``torch.initial_seed()`` is used, so certifying never advances the global RNG.
        multipliers: (mu1 (P, n, m), mu2 (P, n) or None) cone multipliers for the first P patterns
            of S (a solver's), evaluated as one more candidate. Rows must be the rows of X.
        solution: a :class:`~lightning_convex.Solution`; its pattern set is S when ``patterns`` is
            None, its multipliers are used, and its residual is tried as a second dual point.
        iterations: iterations of the multiplier fit (default: by problem size, 20 to 1000, at most
            200 when the refinement follows).
        support: rows per pattern carrying multipliers in the fit (all rows when n <= support).
        refine: ``"auto"`` (exact cutting-plane refinement when m d' <= 2000), True or False.
        refine_rounds: cutting-plane rounds at most.
        search_steps: Adam steps of the search.
        dual_point: ``"scaled"`` (default): v = y - sum_k alpha_k f_k(X) with alpha >= 0 the
            optimal rescaling of each branch (a K-variable problem; alpha = 1 at a restricted
            optimum); ``"network"``: v = y - f(X).
        fit_dtype: precision of the multiplier fit (default: float32 for large problems without
            refinement, else float64). The bound itself is always evaluated in float64.
        exhaustive: the caller states that S holds every hyperplane arrangement (scope "global").
        strict: see ``patterns``.
        sync: row-shard synchronisation (:class:`RowSync`) when X, y are one shard of the rows.

    Returns:
        a :class:`Certificate`.
    """
    start_time = time.perf_counter()
    sync = sync or RowSync()
    if not isinstance(net, ParallelReLU):
        raise TypeError(f"net must be a ParallelReLU, got {type(net).__name__}")
    beta = check_beta(beta)
    for name, param in net.named_parameters():
        if not bool(torch.isfinite(param).all()):
            raise ValueError(f"the network's parameter {name} contains NaN or inf entries")
    check_int("extra_patterns", extra_patterns)
    check_int("search", search)
    rows = network_rows(net, X, y)
    if rows.y is None:
        raise ValueError("certify needs the targets y")
    device, n_local, m = rows.device, rows.n, net.hidden

    network = _network_pass(net, rows, beta, sync)
    dual = make_dual_point(dual_point, rows.y, network.outputs, network.gram, network.Fy,
                           beta * network.path, sync)
    if solution is not None:
        if patterns is None:
            patterns = solution.patterns
        if multipliers is None:
            multipliers = solution.multipliers
    generator = private_generator(generator)  # one stream for the sampled patterns and the search
    S, scope, contains = _pattern_set(net, rows, network, patterns, extra_patterns, generator, exhaustive,
                                      strict, membership_tol, sync)
    program = RestrictedProgram(rows, None, S, beta)
    P, _, d = program.shape

    # -- B_p from fitted multipliers, then a solver's -------------------------------------------
    g = sync.sum(program.predict_adjoint(dual.v))  # A^T v over all rows
    plan = _fit_plan(P, network.n_total, m, d, iterations, support, refine, fit_dtype)
    B, seeds = _fitted_bounds(program, g, plan, sync)
    if multipliers is not None:
        mu1, mu2 = _given_multipliers(multipliers, P, n_local, m, device)
        Pm = mu1.shape[0]
        if Pm:
            given = pattern_bounds(pattern_block(program, slice(0, Pm)), dual.v, mu1, mu2, sync)
            B[:Pm] = torch.minimum(B[:Pm], given)

    # -- the exact value where B_p limits the bound ---------------------------------------------
    tau, rho_floor = refinement_floor(dual.vy, dual.vv, beta, dual.branch_corr, network.path, contains)
    refined = 0
    if plan.refine:
        refined = refine_bounds(program, g, B, max(tau, rho_floor), seeds, sync, refine_rounds,
                                add_rows=max(16, 2 * m * d))

    # -- the bound ----------------------------------------------------------------------------
    Bmax = float(B.max())
    bound = lower_bound(dual.vy, dual.vv, beta, Bmax)
    info = {"B_max": Bmax, "tau": tau, "rho_floor": rho_floor, "iterations": plan.iterations,
            "support": plan.support, "v": dual_point}
    if (solution is not None and multipliers is not None and solution.residual.shape[0] == n_local
            and Pm == P):
        # the solver's own residual with its own multipliers: exact at its optimum (certified
        # only when its multipliers cover every pattern)
        residual = solution.residual.to(device=device, dtype=torch.float64)
        candidate = program_bound(program, residual, (mu1, mu2), sync)
        if candidate.value > bound.value:
            bound = candidate
            info["v"] = "solution"
    lower = bound.value

    # -- search outside S -----------------------------------------------------------------------
    violations = None
    if search:
        violations = search_outside(rows.features, network.residual, beta, net.depth, m, net.bias, search,
                                    search_steps, generator, network.W1, network.w2, network.path, sync)
    return Certificate(
        primal=network.primal, lower_bound=lower, gap=network.primal - lower,
        relative_gap=relative_gap(network.primal, lower), scope=scope, num_patterns=P, patterns=S,
        max_violation=float("nan") if violations is None else violations.max_violation,
        violating_patterns=None if violations is None else violations.patterns,
        violating_weights=None if violations is None else violations.weights,
        pattern_bounds=(B / beta).cpu(), dual_scale=bound.scale, contains_network=bool(contains.all()),
        n=network.n_total, seconds=time.perf_counter() - start_time, refined=refined, info=info,
    )
