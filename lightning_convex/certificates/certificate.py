"""Duality-gap certificates for a parallel ReLU network (MATH.md sections 5, 6 and 8).

:func:`certify` returns a :class:`Certificate`: the network's objective J(theta), a VALID lower
bound on OPT(S), the optimum of the restricted convex program over a pattern set S (MATH.md
section 3), their gap, and optionally the result of a search for strict descent directions
outside S (section 6).

The bound is the section-5 bound of :mod:`lightning_convex.duality`: for any dual point v and any
cone multipliers mu >= 0, B_p(v, mu) = max_j ||(A^T v + G^T mu)_pj|| bounds lambda_p(v), and
g(c v) with c = clip(v.y / ||v||^2, 0, beta / max_p B_p) is <= OPT(S). Validity never depends on
how v and mu were found, so every method only has to make the bound tight, and every bound is
evaluated in float64 on the program's own rows, whatever produced v and mu. The methods
(``method``), one module each:

* ``"exact"`` (:mod:`.exact`): solve the restricted program with the exact reference and use its
  residual and multipliers; the gap is then J - OPT(S) to solver precision. ``"auto"`` takes it
  where the solve is cheap (small programs).
* ``"engine"`` (:mod:`lightning_convex.engine.dual`): warm-started iterations of the scale engine
  for a time budget, whose dual iterate improves on the network's residual; a previous
  certificate's engine state (``warm_start``) is continued: under a budget the one-time basis
  of the rows is built in pieces over several calls (the network's own dual points bound
  meanwhile), then the iterate goes on where it stopped, so a callback's iterations add up over
  a fit instead of starting cold. ``"auto"`` takes it elsewhere.
* ``"fit"`` (:mod:`.fit`): the network's own dual point with multipliers fitted on support rows
  and refined by cutting planes: tight only near a restricted optimum.

Each method's dual points are scored together with the network's own dual point
(:mod:`.dual_point`) and any multipliers or solution the caller passes (:mod:`.candidates`).

Every sum over rows goes through a :class:`~lightning_convex.rows.RowSync`, so the same code
certifies data split in row shards over processes (the DDP callback) and gives the
single-process certificate up to floating-point summation order (under a time budget the
engine's iteration count is the one thing that may differ; ``max_iter`` fixes it).

Scope (section 8): the gap bounds J(theta) - OPT(S), where S is the network's own active set,
a given set, plus any sampled patterns; ``scope`` says which. It is a global statement only when
S holds every hyperplane arrangement (``exhaustive=True``, the caller's claim).
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass, field
from typing import Optional

import torch

from .._checks import check_beta, check_float_dtype, check_int
from ..duality import lower_bound, relative_gap
from ..engine.dual import DualState, improve_dual
from ..mapping import branch_variables, scatter_to_patterns
from ..model import ParallelReLU, network_rows
from ..patterns import PatternSet, private_generator
from ..program import RestrictedProgram
from ..rows import RowSync
from .candidates import Choice, best_choice, best_of
from .dual_point import DUAL_POINTS, dual_point as make_dual_point
from .exact import ALWAYS_EXACT_ENTRIES, exact_dual, exact_fits, program_entries
from .fit import DEFAULT_SUPPORT, fit_bounds, fit_plan
from .network import network_pass, pattern_set
from .search import search_outside

__all__ = ["Certificate", "certify", "check_certify_options", "DEFAULT_MARGIN"]

METHODS = ("auto", "exact", "engine", "fit")
#: ``suboptimal`` needs max_violation > 1 + DEFAULT_MARGIN (see :func:`certify`, ``margin``)
DEFAULT_MARGIN = 1e-6
#: without a time limit the engine gets the time of this many passes of the network over the
#: rows (an epoch of first-order training costs a few: forward, backward, the optimizer's
#: step), and at least ENGINE_MIN_SECONDS
EPOCH_PASSES = 4
ENGINE_MIN_SECONDS = 1.0
#: the seconds kept for the final float64 evaluation of the engine's dual points, in passes of
#: the network over the rows (each point costs one product, the multipliers one, the chosen
#: bound one more)
FINAL_PASSES = 3


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
            search of section 6 (the raw number; see ``suboptimal``); NaN without a search.
        suboptimal: True only when the search found a branch with r . f_theta'(X) / beta above
            1 + ``margin``: a strict descent direction, so the network is not globally optimal.
        margin: the relative margin ``suboptimal`` was decided with.
        violating_patterns: the patterns (on the given rows) of the branches above 1 + margin,
            most violating first, for a solver to add; ``None`` without one.
        violating_weights: (W1 (V, d', m), w2 (V, m) or None, w3 (V,)) of those branches, unit
            path norm, float64 on the network's device (patterns on other rows: read them there).
        pattern_bounds: B_p / beta per pattern (float64, CPU) for the dual point and multipliers
            of the bound: > 1 where that point violates pattern p's dual constraint.
        dual_scale: the c of section 5 applied to that dual point.
        contains_network: whether every branch lies in a cone of S.
        n: number of rows (all shards).
        seconds: wall time.
        refined: patterns refined by the exact cutting-plane step (method ``"fit"``).
        method: how the dual point was found (``"exact"``, ``"engine"``, ``"fit"`` or
            ``"given"``: the caller's solution alone).
        info: details: ``v`` (which dual point gave the bound), ``B_max``, and the method's own.
        state: the engine's state after this certificate (method ``"engine"``), which
            ``certify(..., warm_start=this)`` continues; not part of comparisons or checkpoints.
    """

    primal: float
    lower_bound: float
    gap: float
    relative_gap: float
    scope: str
    num_patterns: int
    patterns: Optional[PatternSet] = None
    max_violation: float = float("nan")
    suboptimal: bool = False
    margin: float = DEFAULT_MARGIN
    violating_patterns: Optional[PatternSet] = None
    violating_weights: Optional[tuple] = None
    pattern_bounds: Optional[torch.Tensor] = None
    dual_scale: float = 0.0
    contains_network: bool = True
    n: int = 0
    seconds: float = 0.0
    refined: int = 0
    method: str = ""
    info: dict = field(default_factory=dict)
    state: Optional[DualState] = field(default=None, repr=False, compare=False)

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
        extra = "" if math.isnan(self.max_violation) else \
            f", max_violation={self.max_violation:.4g}, suboptimal={self.suboptimal}"
        return (
            f"Certificate(primal={self.primal:.10g}, lower_bound={self.lower_bound:.10g}, "
            f"gap={self.gap:.3e}, relative_gap={self.relative_gap:.3e}, scope={self.scope!r}, "
            f"num_patterns={self.num_patterns}, method={self.method!r}{extra})"
        )


# ------------------------------------------------------------------------------------------------
# Steps of certify
# ------------------------------------------------------------------------------------------------
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


def _check_options(method, time_limit, max_iter, margin, warm_start, iterations, support, refine, refine_rounds,
                   search_steps, dual_point, engine_dtype, fit_dtype, membership_tol) -> None:
    """Every option checked before any work, each error naming its parameter."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}")
    if time_limit is not None and (isinstance(time_limit, bool) or not isinstance(time_limit, (int, float))
                                   or not time_limit > 0):
        raise ValueError(f"time_limit must be a positive number of seconds or None, got {time_limit!r}")
    check_int("max_iter", max_iter, minimum=1, optional=True)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin >= 0:
        raise ValueError(f"margin must be a number >= 0, got {margin!r}")
    if warm_start is not None and not isinstance(warm_start, (Certificate, DualState)):
        raise TypeError(f"warm_start must be a Certificate or None, got {type(warm_start).__name__}")
    check_int("iterations", iterations, optional=True)
    check_int("support", support, minimum=1)
    if not (refine is True or refine is False or refine == "auto"):
        raise ValueError(f"refine must be 'auto', True or False, got {refine!r}")
    check_int("refine_rounds", refine_rounds)
    check_int("search_steps", search_steps)
    if dual_point not in DUAL_POINTS:
        raise ValueError(f"dual_point must be one of {', '.join(map(repr, DUAL_POINTS))}, got {dual_point!r}")
    check_float_dtype(engine_dtype, "engine_dtype")
    if fit_dtype is not None:
        check_float_dtype(fit_dtype, "fit_dtype")
    if isinstance(membership_tol, bool) or not isinstance(membership_tol, (int, float)) or not membership_tol >= 0:
        raise ValueError(f"membership_tol must be a number >= 0, got {membership_tol!r}")


def check_certify_options(options: dict) -> None:
    """Raise now, as :func:`certify` would later, on an unknown keyword in ``options`` (keyword
    arguments meant for :func:`certify`, e.g. a callback's) or a bad value."""
    parameters = inspect.signature(certify).parameters
    for key in options:
        if key not in parameters or key in ("net", "X", "y", "beta"):
            raise TypeError(f"unknown certify option {key!r}; known: "
                            f"{', '.join(k for k in parameters if k not in ('net', 'X', 'y', 'beta'))}")
    values = {name: p.default for name, p in parameters.items()}
    values.update(options)
    _check_options(*(values[name] for name in inspect.signature(_check_options).parameters))
    check_int("extra_patterns", values["extra_patterns"])
    check_int("search", values["search"])


def _agree(sync: RowSync, value: float, device) -> float:
    """The largest of every process's ``value`` (so that all of them decide alike)."""
    if not sync.distributed:
        return float(value)
    return float(sync.max(torch.tensor([float(value)], dtype=torch.float64, device=device)).item())


def _resolve(method: str, solution, S: PatternSet, n_total: int, d: int, beta: float, deadline,
             sync: RowSync) -> str:
    """The method ``"auto"`` stands for here: the caller's optimal solution over S when there is
    one (its dual is the exact one already), else an exact solve where it is cheap, else the
    engine."""
    if method != "auto":
        return method
    if solution is not None and solution.is_optimal and solution.multipliers is not None \
            and len(solution.patterns) == len(S) and solution.program.beta == beta:
        return "given"
    left = None if deadline is None else -_agree(sync, time.perf_counter() - deadline, S.device)
    return "exact" if exact_fits(program_entries(len(S), n_total, S.hidden, S.depth, d), left) else "engine"


def _engine_start(network, S: PatternSet, where: torch.Tensor) -> torch.Tensor:
    """The network's convex variable over S (MATH.md section 2): branch k added to the pattern it
    lies in (``where``, -1: none), float64 (P, m, d')."""
    q = branch_variables(network.W1, network.w2, network.w3)
    return scatter_to_patterns(q, where, len(S)).to(S.device)


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
    method: str = "auto",
    time_limit: Optional[float] = None,
    max_iter: Optional[int] = None,
    warm_start=None,
    margin: float = DEFAULT_MARGIN,
    engine_dtype: torch.dtype = torch.float32,
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
            None, its multipliers are used, and its residual is tried as another dual point.
        method: how the dual point is improved (module docstring): ``"auto"`` (default: the
            caller's optimal ``solution`` when it covers S; else ``"exact"`` when the program is
            small, P n (m + 1) d' <= :data:`~.exact.ALWAYS_EXACT_ENTRIES` entries, or up to
            :data:`~.exact.MAX_EXACT_ENTRIES` when the solve is expected to fit ``time_limit``;
            else ``"engine"``), ``"exact"``, ``"engine"`` or ``"fit"``.
        time_limit: seconds for the whole call, a budget the methods spend (the exact solve gets
            what is left; the engine stops in time for the final float64 evaluation; the fit
            ignores it). ``None``: no limit on an exact solve, and for the engine about one
            epoch of training: :data:`EPOCH_PASSES` times the measured pass of the network
            over the rows, at least :data:`ENGINE_MIN_SECONDS`.
        max_iter: engine iterations at most (with ``time_limit=None`` exactly that many: the
            deterministic choice, e.g. to compare sharded and single-process runs).
        warm_start: a previous :class:`Certificate` of the same rows (its ``state``): the engine
            continues building its basis, and then its iterate when S has the same shape (a
            callback's network an epoch later), instead of starting cold.
        margin: ``suboptimal`` is set only when the search finds r . f_theta'(X) / beta above
            1 + ``margin``, and only such branches are listed. At a global optimum the ratio is at
            most 1 in exact arithmetic, but it is computed from a network rebuilt from a solver's
            optimum (interior-point tolerance 1e-9 relative leaves the dual constraint satisfied
            to about 1e-8 .. 1e-7) and in floating point (the network's own branch, a start of
            the search, sits at 1 up to rounding): the default 1e-6 lies above both and far below
            the violations that mean something (1e-3 and more).
        engine_dtype: precision of the engine's passes (its dual points are scored in float64).
        iterations, support, refine, refine_rounds, fit_dtype: the ``"fit"`` method's settings
            (:mod:`.fit`): fit iterations (default by problem size, 20 to 1000, at most 200 before a
            refinement), support rows per pattern (all rows when n <= support), the cutting-plane
            refinement (``"auto"``: when m d' <= 2000) and its rounds, the fit's precision.
        search_steps: Adam steps of the search.
        dual_point: the network's own dual point: ``"scaled"`` (default): v = y - sum_k alpha_k
            f_k(X) with alpha >= 0 the optimal rescaling of each branch (alpha = 1 at a
            restricted optimum); ``"network"``: v = y - f(X).
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
    _check_options(method, time_limit, max_iter, margin, warm_start, iterations, support, refine, refine_rounds,
                   search_steps, dual_point, engine_dtype, fit_dtype, membership_tol)
    deadline = None if time_limit is None else start_time + float(time_limit)
    rows = network_rows(net, X, y)
    if rows.y is None:
        raise ValueError("certify needs the targets y")
    device, n_local, m = rows.device, rows.n, net.hidden

    network = network_pass(net, rows, beta, sync)
    pass_seconds = time.perf_counter() - start_time
    dual = make_dual_point(dual_point, rows.y, network.outputs, network.gram, network.Fy,
                           beta * network.path, sync)
    if solution is not None:
        if patterns is None:
            patterns = solution.patterns
        if multipliers is None:
            multipliers = solution.multipliers
    generator = private_generator(generator)  # one stream for the sampled patterns and the search
    S, scope, contains, where = pattern_set(net, rows, network, patterns, extra_patterns, generator, exhaustive,
                                            strict, membership_tol, sync)
    program = RestrictedProgram(rows, None, S, beta)
    P, _, d = program.shape
    given = None if multipliers is None else _given_multipliers(multipliers, P, n_local, m, device)
    network_point = ("network", dual.v)
    extra_points = []
    if solution is not None and solution.residual.shape[0] == n_local:
        extra_points.append(("solution", solution.residual))

    # -- the method's dual points and multipliers -------------------------------------------------
    chosen = _resolve(method, solution, S, network.n_total, d, beta, deadline, sync)
    choices, info, refined, state = [], {}, 0, None
    if chosen == "fit":
        plan = fit_plan(P, network.n_total, m, d, iterations, support, refine, fit_dtype)
        B, info, refined = fit_bounds(program, dual, network.path, contains, plan, given, refine_rounds, sync)
        choices.append(Choice(lower_bound(dual.vy, dual.vv, beta, float(B.max())), "network", B, None))
    elif chosen == "exact":
        left = None  # a tiny program is solved whatever the budget (exact.ALWAYS_EXACT_ENTRIES)
        if deadline is not None and program_entries(P, network.n_total, m, net.depth, d) > ALWAYS_EXACT_ENTRIES:
            left = -_agree(sync, time.perf_counter() - deadline, device)
        residual, mults, info = exact_dual(program, sync, left)
        choices.append(best_of(program, [("exact", residual), network_point], mults, sync))
    elif chosen == "engine":
        if deadline is None and max_iter is None:
            deadline = start_time + _agree(sync, max(ENGINE_MIN_SECONDS, EPOCH_PASSES * pass_seconds), device)
        carried = warm_start.state if isinstance(warm_start, Certificate) else warm_start
        reserve = _agree(sync, FINAL_PASSES * pass_seconds, device)
        iterate, state = improve_dual(program, _engine_start(network, S, where), carried, deadline=deadline,
                                      max_iter=max_iter, reserve=reserve, dtype=engine_dtype, sync=sync,
                                      residual=network.residual)
        info = dict(iterate.info)
        choices.append(best_of(program, iterate.points + [network_point], iterate.program_multipliers(), sync))
    if given is not None or extra_points:
        choices.append(best_of(program, [network_point] + extra_points, given, sync))
    if not choices:  # "given" without multipliers cannot happen; mu = 0 is the fallback
        choices.append(best_of(program, [network_point], None, sync))
    choice = best_choice(choices)
    lower = choice.bound.value
    info.update(B_max=choice.bound.bound_max, v=choice.name)

    # -- search outside S -----------------------------------------------------------------------
    violations = None
    if search:
        violations = search_outside(rows.features, network.residual, beta, net.depth, m, net.bias, search,
                                    search_steps, generator, network.W1, network.w2, network.path, sync,
                                    margin=margin)
    return Certificate(
        primal=network.primal, lower_bound=lower, gap=network.primal - lower,
        relative_gap=relative_gap(network.primal, lower), scope=scope, num_patterns=P, patterns=S,
        max_violation=float("nan") if violations is None else violations.max_violation,
        suboptimal=violations is not None and violations.max_violation > 1 + margin, margin=float(margin),
        violating_patterns=None if violations is None else violations.patterns,
        violating_weights=None if violations is None else violations.weights,
        pattern_bounds=(choice.bounds / beta).cpu(), dual_scale=choice.bound.scale,
        contains_network=bool(contains.all()), n=network.n_total, seconds=time.perf_counter() - start_time,
        refined=refined, method=chosen, info=info, state=state,
    )
