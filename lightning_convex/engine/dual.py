"""Warm-started ADMM passes for certificates: the engine's dual iterate, carried between calls.

A certificate (MATH.md section 5) needs a dual point v and cone multipliers mu >= 0, not a
primal solution: :func:`improve_dual` runs the ADMM of :mod:`.admm` for a budget and hands back
the dual information of its last iterate, two dual points with one set of multipliers:

* v_V, the V-step's residual, with which (v_V, mu) is the ADMM's own dual iterate (its loss and
  cone steps satisfy their optimality conditions exactly, so only the Z-step's residual keeps it
  from dual feasibility): the better point while the iterate is far from the optimum;
* v = y - A Z, the primal residual, the better point near it.

Between checks (every CHECK_EVERY iterations, where residual balancing also adapts the
penalty) the best check so far is kept, by the bound the iteration itself reads off it.

A :class:`DualState` keeps what the next call can reuse: the basis of the rows (one
eigendecomposition; a fit certifies the same rows every time) and the ADMM iterate with its
scaled duals and penalty. Under a clock the basis is built in pieces (:mod:`.basis_build`),
carried from call to call, so that no call overruns its budget paying for it; until it is
complete a call runs no iteration and returns the network's V-step point (:func:`v_step`,
which needs no basis) with no multipliers. A later call on the same rows with a pattern set of
the same shape (a network's own active set an epoch later) continues from that iterate as it
is, its stale rows included: the scaled duals stay consistent with each other, so the
iteration goes on where it stopped. (Rebuilding the duals from the new network's residual
instead, as a warm start from multipliers alone does, throws the iterate far off;
:meth:`~.admm.Admm.start`.)

Sums over rows go through the program's :class:`~lightning_convex.rows.RowSync`, and the
decision to stop is taken on every process alike (a vote), so sharded rows give the
single-process result when the iteration count is fixed (``max_iter``); under a time limit the
count depends on the slowest process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

import torch

from ..duality import lower_bound
from ..program import RestrictedProgram
from ..rows import RowSync
from .admm import RHO_START, Admm, AdmmState
from .basis_build import BasisBuild
from .operators import Basis, Operators, row_basis
from .threads import ThreadTuner

#: a check iteration (two more products and the multipliers) costs about this many plain ones
CHECK_COST = 2.0
#: iterations between two checks (residual balancing adapts the penalty there, and the best
#: check's dual points are the ones returned)
CHECK_EVERY = 25
#: products over all rows that the start and one check iteration take (the least an ADMM call
#: does once it has begun: a call with less time left keeps to the basis's dual point)
FIRST_ITERATION_PRODUCTS = 6


@dataclass
class DualState:
    """What :func:`improve_dual` carries from one call to the next (tensors on the rows' device).

    Attributes:
        features: the rows the basis belongs to (a call on other rows starts afresh).
        basis: their :class:`~.operators.Basis`, ``None`` while it is being built.
        admm: the ADMM iterate, scaled duals and penalty after the last call, or ``None``.
        iterations: ADMM iterations over all calls so far.
        build: the :class:`~.basis_build.BasisBuild` in progress (a budgeted call builds the
            basis in pieces), ``None`` once the basis is complete.
    """

    features: torch.Tensor
    basis: Optional[Basis]
    admm: Optional[AdmmState] = None
    iterations: int = 0
    build: Optional[BasisBuild] = None

    def same_rows(self, features: torch.Tensor) -> bool:
        """Whether ``features`` are the rows this state belongs to."""
        return features is self.features or (
            features.shape == self.features.shape and features.device == self.features.device
            and bool(torch.equal(features, self.features)))

    def basis_for(self, features: torch.Tensor) -> Optional[Basis]:
        """The basis when ``features`` are the rows it was computed on (and it is complete),
        else ``None``."""
        return self.basis if self.basis is not None and self.same_rows(features) else None


@dataclass
class DualIterate:
    """The dual information of the last iterate of :func:`improve_dual` (working dtype).

    Attributes:
        points: [(name, v (n_local,))]: the better (by the iteration's own estimate) of the ADMM's
            dual point v_V ("admm dual") and primal residual ("admm primal"), then with a
            ``residual`` given, its V-step ("network V-step", :func:`v_step`).
        mu1: (n_local, P, m) cone multipliers >= 0 (the engine's layout); mu2: (n_local, P) or None.
        info: iterations (this call), total_iterations, rho, seconds, stop.
    """

    points: List[Tuple[str, torch.Tensor]]
    mu1: Optional[torch.Tensor]
    mu2: Optional[torch.Tensor]
    info: dict = field(default_factory=dict)

    def program_multipliers(self, dtype=torch.float64):
        """(mu1 (P, n_local, m), mu2 (P, n_local) or None) in the program's layout; ``None`` when
        the call ran no iteration (mu = 0)."""
        if self.mu1 is None:
            return None
        mu1 = self.mu1.to(dtype).permute(1, 0, 2).contiguous()
        return mu1, None if self.mu2 is None else self.mu2.to(dtype).T.contiguous()


def row_counts(program: RestrictedProgram) -> torch.Tensor:
    """c_i = sum_pj M_pj,i, the (pattern, neuron) pairs whose prediction term row i feeds
    (M = D1 D2), float64 (n_local,)."""
    pats = program.patterns
    M = pats.D1 if pats.D2 is None else pats.D1 & pats.D2[:, :, None]
    return M.sum(dim=(0, 2)).to(torch.float64)


def v_step(counts: torch.Tensor, residual: torch.Tensor, rho: float) -> torch.Tensor:
    """The V-step's dual point for a primal point with residual r and zero scaled duals:
    rho r_i / (rho + c_i), c_i = :func:`row_counts` (:mod:`.admm`). What one ADMM iteration from
    a network gives as its dual point, without the iteration (nor the basis): rows feeding many
    patterns' constraints are shrunk, rows feeding none keep their residual (their v_i enters no
    constraint)."""
    return rho * residual / (rho + counts.to(device=residual.device, dtype=residual.dtype))


def _vote(sync: RowSync, stop: bool, device) -> bool:
    """True on every process when any process votes to stop."""
    if not sync.distributed:
        return stop
    return bool(sync.max(torch.tensor([float(stop)], device=device)).item() > 0)


@torch.no_grad()
def improve_dual(program: RestrictedProgram, Q0: Optional[torch.Tensor] = None, state: Optional[DualState] = None,
                 deadline: Optional[float] = None, max_iter: Optional[int] = None, reserve: float = 0.0,
                 dtype: torch.dtype = torch.float32, sync: Optional[RowSync] = None,
                 callback: Optional[Callable] = None, tune_threads: bool = True,
                 residual: Optional[torch.Tensor] = None) -> Tuple[DualIterate, DualState]:
    """ADMM iterations on ``program`` until ``deadline`` (a ``time.perf_counter()`` value, less
    ``reserve`` seconds kept for the caller) or ``max_iter`` iterations, whichever comes first
    (at least one iteration; one of the two must be given).

    Args:
        program: the restricted program on this process's rows.
        Q0: (P, m, d') the primal start when nothing is carried (a network's convex variable);
            ``None``: Q = 0.
        state: a previous call's :class:`DualState` (or ``None``): its basis is reused on the
            same rows (or its build continued, :func:`_basis`) and its iterate continued when
            the shapes agree.
        dtype: precision of the passes (the caller evaluates its bound in float64).
        sync: row-shard synchronisation (default: one process).
        callback: called after every iteration with {"iteration", "seconds"}; ``True`` stops
            (the vote is shared by every process).
        tune_threads: on a CPU, choose the thread count by timing (:mod:`.threads`).
        residual: the residual y - A Q0 of the primal start (float64, n_local): its V-step
            (:func:`v_step`) is returned as one more dual point, the one a cold start's first
            iteration would give; with a carried iterate it covers the early iterations, whose
            dual points can be worse than that.

    Returns:
        (:class:`DualIterate` of the last iterate, the :class:`DualState` to pass next time).
    """
    if deadline is None and max_iter is None:
        raise ValueError("improve_dual needs a deadline or max_iter")
    started = time.perf_counter()
    sync = sync or RowSync()
    features = program.features
    basis = None if state is None else state.basis_for(features)
    if basis is None:
        basis, state = _basis(program, state, deadline, reserve, dtype, sync)
    if basis is None:  # still being built: the dual point that needs no basis
        v = program.y if residual is None else residual
        point = v_step(row_counts(program), v.to(program.device, torch.float64), RHO_START * program.beta)
        info = {"iterations": 0, "total_iterations": state.iterations, "rho": None, "start": "basis",
                "seconds": time.perf_counter() - started, "stop": "basis",
                "basis": "done" if state.build is None else state.build.stage}
        return DualIterate([("network V-step", point)], None, None, info), state
    tuner = ThreadTuner(program.device, enabled=tune_threads)
    try:
        ops = Operators(program, dtype=dtype, basis=basis, sync=sync)
        alg = Admm(ops)
        carried = state.admm
        t_start = time.perf_counter()
        per_iteration = None
        if carried is not None and tuple(carried.Z.shape) == ops.shape and \
                tuple(carried.Tu.shape) == (ops.n, ops.P, ops.m):
            alg.resume(carried)
            how = "carried"
        else:
            Z0 = torch.zeros(ops.shape, dtype=dtype, device=ops.device) if Q0 is None else ops.to_z(Q0)
            alg.start(Z0)  # a pass over the rows, about one iteration's products
            per_iteration = time.perf_counter() - t_start
            how = "network" if Q0 is not None else "zero"
        iteration, stop, best = 0, "max_iter", None
        last = max_iter == 1
        if deadline is not None and per_iteration is not None and \
                time.perf_counter() + CHECK_COST * per_iteration + reserve >= deadline:
            last, stop = True, "time_limit"
        last = _vote(sync, last, ops.device)
        while True:
            iteration += 1
            t_step = time.perf_counter()
            check = alg.step(check=last or iteration % CHECK_EVERY == 0, dual=True)
            seconds = time.perf_counter() - t_step
            if check is not None:
                best = _better(best, check, ops)
            if last:
                break
            if check is None:
                tuner.iteration_done(seconds)
                per_iteration = seconds if per_iteration is None else min(per_iteration, seconds)
            now = time.perf_counter()
            want = max_iter is not None and iteration + 1 >= max_iter
            if deadline is not None and now + (1 + CHECK_COST) * per_iteration + reserve >= deadline:
                want, stop = True, "time_limit"
            if callback is not None and callback({"iteration": iteration, "seconds": now - started}):
                want, stop = True, "callback"
            last = _vote(sync, want, ops.device)
    finally:
        tuner.restore()
    state.admm = alg.state
    state.iterations += iteration
    _, check, which = best
    points = [("admm dual", check.v_dual) if which == "dual" else ("admm primal", ops.y - check.pred)]
    if residual is not None:
        points.append(("network V-step", v_step(row_counts(program), residual.to(ops.device), alg.rho0)))
    info = {"iterations": iteration, "total_iterations": state.iterations, "rho": alg.state.rho, "start": how,
            "seconds": time.perf_counter() - started, "stop": stop}
    return DualIterate(points, check.mu1, check.mu2, info), state


def _basis(program: RestrictedProgram, state: Optional[DualState], deadline: Optional[float], reserve: float,
           dtype: torch.dtype, sync: RowSync) -> Tuple[Optional[Basis], DualState]:
    """The basis of the program's rows for this call, and the state that carries it.

    Without a clock (``deadline`` None), on rows split over processes, or with fewer rows than
    columns, it is computed at once (:func:`~.operators.row_basis`). Under a clock on one
    process it is built in pieces (:class:`~.basis_build.BasisBuild`, continued from
    ``state``) until ``deadline - reserve``; ``None`` when it is not complete, or completes
    with too little time left for the ADMM's start and first iteration (the next call has it).
    """
    features = program.features
    n, d = features.shape
    if deadline is None or sync.distributed or n < d:
        basis = row_basis(features, sync=sync)
        return basis, DualState(features, basis)
    build = None
    if state is not None and state.build is not None and state.same_rows(features):
        build = state.build
    if build is None:
        build = BasisBuild(features, dtype)
    state = DualState(features, None, build=build)
    basis = build.advance(deadline - reserve)
    if basis is None:
        return None, state
    state.basis, state.build = basis, None
    first = build.product_seconds(program.P * program.m)
    if first is not None and time.perf_counter() + FIRST_ITERATION_PRODUCTS * first + reserve > deadline:
        return None, state
    return basis, state


def _estimate(check, ops):
    """(bound, "dual" or "primal"): the better of the two dual points' section-5 bounds as the
    iteration sees them (its own coordinates and precision: good enough to choose, never
    reported)."""
    beta = ops.program.beta
    primal = lower_bound(check.vy, check.vv, beta, float(ops.bound_norms(check.C.double()).max())).value
    dual = lower_bound(check.dual_vy, check.dual_vv, beta, float(ops.bound_norms(check.C_dual.double()).max())).value
    return (dual, "dual") if dual >= primal else (primal, "primal")


def _better(best, check, ops):
    """(estimate, check, which point) of the better of ``best`` and ``check`` (the later on ties)."""
    value, which = _estimate(check, ops)
    if best is None or value >= best[0]:
        return value, check, which
    return best
