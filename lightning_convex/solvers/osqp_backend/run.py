"""One run of the method: stage A, the feasible start, then active-set cycles until certified.

A cycle solves the current face (:class:`.face.FaceNewton`), fits multipliers and certifies
(:mod:`.multipliers`); with the gap open it releases rows, lets groups enter, or makes a joint
QP move (:mod:`.moves`). The run ends ``OPTIMAL`` when the gap is certified, with the budget's
status when :class:`.limits.Limits` stops it, and ``INACCURATE`` (or the inner OSQP failure
that stopped progress) when the moves stall with the gap open. Every face iterate is feasible,
so a run that did not certify returns the lowest-F one it met.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

from ...solution import SolveStatus
from .face import FaceNewton
from .limits import Limits, Stop
from .moves import enter, joint_round, release
from .multipliers import certificate, fit_multipliers
from .problem import Problem
from .projection import project_feasible
from .qp import QPStats
from .stage_a import ReweightedQPs

#: a failed joint round is retried once at eps * JOINT_REFINE
JOINT_REFINE = 1e-3
#: groups below this fraction of the largest after stage A start the cycles at zero
DROP = 1e-3
#: cycles in a row without a lower F after which the moves count as thrashing
MAX_IDLE = 10


@dataclass(frozen=True)
class Settings:
    """The options of a solve (checked by :func:`~.backend.solve_osqp`)."""

    tol: float  # certified relative gap that declares OPTIMAL
    eps: float  # OSQP's absolute/relative tolerance
    feas_tol: float  # largest cone-row violation, in units of max(1, max|y|)
    max_iter: int  # outer iterations
    verbose: bool
    irls_rounds: int  # stage-A rounds from zero
    warm_irls_rounds: int  # stage-A rounds from a warm point off the direct path


@dataclass
class RunResult:
    status: SolveStatus
    q: np.ndarray
    mu: np.ndarray
    info: dict


@dataclass
class _State:
    """What a stop at any point hands back: the current iterate, its multipliers and gap, and
    the lowest-F face iterate so far."""

    q: np.ndarray
    mu: np.ndarray
    gap: float = np.inf
    cycles: int = 0
    best: Optional[Tuple[float, np.ndarray, np.ndarray, float]] = field(default=None)


def run(pb: Problem, q: np.ndarray, settings: Settings, limits: Limits, irls_rounds: int,
        irls_rel_stop: float = 0.0) -> RunResult:
    """Run from the feasible point q: ``irls_rounds`` stage-A rounds (stopping early once a round
    gains at most ``irls_rel_stop`` relative), then the active-set cycles, within ``limits``."""
    stats = QPStats()
    stage_a = ReweightedQPs(pb, settings.eps, settings.verbose, stats)
    face = FaceNewton(pb)
    state = _State(q=q, mu=np.zeros(pb.C))
    try:
        if irls_rounds > 0:
            limits.tick()
            q_a = stage_a.run(q, irls_rounds, limits, rel_stop=irls_rel_stop)
            if pb.F(q_a) < pb.F(q) or not (pb.norms(q) > 0).any():
                state.q = q_a
        status = _cycles(pb, settings, limits, face, stats, state)
    except Stop as stop:
        status = stop.status
    q, mu, gap = state.q, state.mu, state.gap
    if status != SolveStatus.OPTIMAL and state.best is not None and state.best[0] < pb.F(q):
        _, q, mu, gap = state.best
    info = dict(
        iterations=limits.count, qp_solves=stats.qp_solves, osqp_iterations=stats.osqp_iterations,
        newton_steps=face.newton_steps, gap=float(gap), cycles=state.cycles,
        working_rows=int(stage_a.W.sum()) if stage_a.W is not None else 0,
    )
    if status == SolveStatus.OPTIMAL and pb.C and float(-(pb.G @ q).min()) > settings.feas_tol * pb.scale:
        status = SolveStatus.INACCURATE
    if status == SolveStatus.INACCURATE and stats.failed is not None:
        status = stats.failed  # an inner OSQP failure is what stopped progress: say which
    if stats.failed is not None:
        info["osqp_failure"] = stats.failed.value
    return RunResult(status, q, mu, info)


def _cycles(pb: Problem, settings: Settings, limits: Limits, face: FaceNewton, stats: QPStats,
            state: _State) -> SolveStatus:
    """The active-set cycles from ``state.q``, keeping ``state`` current for a stop."""
    beta = pb.beta
    nr = pb.norms(state.q)
    # groups the reweighting is shrinking away start at zero (re-entry is priced exactly)
    S = nr > DROP * max(float(nr.max()), 1e-300)
    q = state.q.copy()
    q.reshape(pb.ng, pb.d)[~S] = 0.0
    # an exactly feasible start near the OSQP point; the rows it lands on start the face,
    # with the rows already tight there (a warm start from a solution sits on its face)
    q, E = project_feasible(pb, q, S)
    E |= pb.tight_rows(q, S, rel=1e-10)
    state.q = q
    idle, last_f = 0, None
    while True:
        limits.tick()
        q, S, E = face.solve(q, S, E, limits)
        state.q = q
        v = pb.y - pb.A @ q
        state.mu, eq_res = fit_multipliers(pb, q, S, E, v)
        F, _, state.gap, bound = certificate(pb, q, state.mu)
        # "improved" drives the stop on thrashing; best is what a stopped run returns
        improved = state.best is None or F < state.best[0] * (1 - 1e-14)
        if state.best is None or F < state.best[0]:
            state.best = (F, q, state.mu, state.gap)
        if settings.verbose:
            print(f"[osqp] B: F={F:.14g} gap={state.gap:.2e} |S|={int(S.sum())} |E|={int(E.sum())} "
                  f"max bound/beta={bound.max() / beta:.9f} max eq_res={eq_res.max():.2e} "
                  f"newton={face.newton_steps}")
        if state.gap <= settings.tol:
            return SolveStatus.OPTIMAL
        state.cycles += 1
        # active-set updates that no longer lower F are thrashing: stop (inaccurate)
        if improved:
            idle = 0
        else:
            idle += 1
            if idle > MAX_IDLE:
                return SolveStatus.INACCURATE
        released = release(pb, q, S, E, v, eq_res)
        if released.size:
            last_f = None
            E = E.copy()
            E[released] = False
            continue
        stalled = last_f is not None and F >= last_f * (1 - 1e-13)
        last_f = F
        moved = None if stalled else enter(pb, q, S, v)
        if moved is not None:
            q, S = moved
            state.q = q
            # rows of E the move left slack must leave E: projecting onto them would undo the
            # move and distort the pattern (the n = 2000 regression test in tests/test_osqp.py)
            E = pb.tight_rows(q, S, rel=1e-12) | (E & pb.tight_rows(q, S, rel=1e-8))
            continue
        moved = _joint_move(pb, q, S, state.mu, bound, settings.eps, limits, stats)
        if moved is None:
            return SolveStatus.INACCURATE  # stationary and nothing can enter, yet the gap is open
        q, S, E = moved
        state.q = q


def _joint_move(pb: Problem, q, S, mu, bound, eps, limits: Limits, stats: QPStats):
    """No single group can move alone (second-layer rows couple the neurons of a pattern): a
    joint QP step over S and the groups the certificate flags, projected back onto the cones.
    Returns (q, S, E) when it lowers F, else None."""
    best_f = pb.F(q)
    cand = (~S) & (~pb.dead) & (bound > pb.beta * (1 + 1e-9))
    # The QP point meets the rows to OSQP's accuracy only: project, then keep it only if it is
    # still better than the certified-feasible point we had. Near the optimum the gain can be
    # below what eps resolves, so a failed round is retried once at eps * JOINT_REFINE.
    for eps_round in (eps, eps * JOINT_REFINE):
        moved = joint_round(pb, q, S, cand, mu, eps_round, limits, stats)
        if moved is None:
            continue
        q_try, E_try = project_feasible(pb, moved[0], moved[1])
        if pb.F(q_try) < best_f:
            return q_try, moved[1] & (pb.norms(q_try) > 0), E_try
    return None
