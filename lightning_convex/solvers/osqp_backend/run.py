"""One run of the method: smoothed proximal Newton steps (OSQP), polished and certified.

Every iteration either lowers F_e (a step of :mod:`.smoothing` with an Armijo line search), or
tightens OSQP's tolerance (its step was no descent direction: too inexact for this point), or,
with the tolerance at its floor, lowers e; e shrinks as well after every full step. So the
smoothed iterates follow the minimisers of F_e as e -> 0, which converge to the optimum of the
program; nothing here depends on guessing which groups or rows are active. Once e is small
against the iterate, each new e is followed by a polish (:mod:`.polish`), which identifies the
support and face from the smoothed point, solves them to rounding and certifies (MATH.md section
5); the run ends ``OPTIMAL`` at the first certified gap <= tol. Iterates are projected onto the
cones (:mod:`.projection`), so every one of them is feasible.

When e and OSQP's tolerance are both at their floors without a certificate, the steps were too
inexact to name the optimal support (a group the optimum keeps small stays out, and every polish
certifies nothing): the run continues from its point with OSQP's tolerance floor EPS_RETRY_FACTOR
times lower, up to EPS_RETRIES times, and only then ends ``INACCURATE`` (the precision this method
can resolve; the best certified point is returned). A run stops with the budget's status when
:class:`.limits.Limits` stops it.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ...solution import SolveStatus
from .face import FaceNewton
from .limits import Limits, Stop
from .polish import MAX_ROUNDS, Polished, polish
from .problem import Problem
from .projection import project_feasible
from .qp import QPStats
from .smoothing import SmoothedQP, smoothed_gradient, smoothed_value

#: e after a full step is e * E_SHRINK
E_SHRINK = 0.2
#: the smallest e, relative to the largest group norm
E_FLOOR = 1e-12
#: the first e from a nonzero (warm) start, relative to its largest group norm
E_WARM = 1e-3
#: OSQP's tolerance follows e: eps = EPS_PER_E * e / (largest group norm), within [eps_min, EPS_START]
EPS_START = 1e-3
EPS_PER_E = 0.01
#: working rows: those with relative slack <= START_ROWS at a nonzero start, then the rows that a
#: step violates by more than CUT * eps (re-solved at once, up to MAX_CUTS times per step)
START_ROWS = 1e-3
CUT = 10.0
MAX_CUTS = 20
#: rows whose OSQP multiplier times ||row|| exceeds ACTIVE_MU times the largest count as active
ACTIVE_MU = 1e-8
#: a polish follows each new e once e <= POLISH_E * the largest group norm
POLISH_E = 1e-1
#: groups larger than SUPPORT_E * e form the support a polish starts from
SUPPORT_E = 10.0
#: e shrinks once a QP's point moved no group by more than CENTER * e
CENTER = 0.1
#: a QP that OSQP ends within this many iterations (its first termination check) from the warm
#: start says nothing about the step: the tolerance tightens
LAZY_ITER = 25
#: active-set rounds of the polish at a nonzero start: its support (every nonzero group of the
#: start) is a guess, dense and wrong from an SGD network, and a wrong dense support takes every
#: round it is given before the smoothed steps start (BENCHMARKS.md, osqp warm-started)
WARM_POLISH_ROUNDS = 8
#: continuations with a lower floor of OSQP's tolerance after a run ends at its floors uncertified
EPS_RETRIES = 2
EPS_RETRY_FACTOR = 0.01


#: the backend's defaults: OSQP's tightest tolerance and the largest cone-row violation accepted
#: (in units of max(1, max|y|))
DEFAULT_EPS = 1e-5
DEFAULT_FEAS_TOL = 1e-9


@dataclass(frozen=True)
class Settings:
    """The options of a solve (checked by :func:`~.backend.solve_osqp`)."""

    tol: float  # certified relative gap that declares OPTIMAL
    eps: float  # OSQP's tightest tolerance
    feas_tol: float  # largest cone-row violation, in units of max(1, max|y|)
    max_iter: int  # outer iterations
    verbose: bool


@dataclass
class RunResult:
    status: SolveStatus
    q: np.ndarray
    mu: np.ndarray
    info: dict


@dataclass
class _State:
    q: np.ndarray
    best: Optional[Polished] = None
    polishes: int = 0


def run(pb: Problem, q: np.ndarray, settings: Settings, limits: Limits) -> RunResult:
    """Run from the feasible point q within ``limits``."""
    stats = QPStats()
    face = FaceNewton(pb)
    state = _State(q=q)
    try:
        status = _loop(pb, settings, limits, face, stats, state)
        for _ in range(EPS_RETRIES):
            if status != SolveStatus.INACCURATE or stats.failed is not None:
                break
            settings = dataclasses.replace(settings, eps=settings.eps * EPS_RETRY_FACTOR)
            status = _loop(pb, settings, limits, face, stats, state)
    except Stop as stop:
        status = stop.status
    best = state.best
    if best is None or (status != SolveStatus.OPTIMAL and pb.F(state.q) < best.F):
        q_out, mu_out, gap = state.q, np.zeros(pb.C), np.inf
    else:
        q_out, mu_out, gap = best.q, best.mu, best.gap
    info = dict(iterations=limits.count, qp_solves=stats.qp_solves, osqp_iterations=stats.osqp_iterations,
                newton_steps=face.newton_steps, gap=float(gap), polishes=state.polishes)
    if status == SolveStatus.OPTIMAL and pb.C and float(-(pb.G @ q_out).min()) > settings.feas_tol * pb.scale:
        status = SolveStatus.INACCURATE
    if status == SolveStatus.INACCURATE and stats.failed is not None:
        status = stats.failed  # an inner OSQP failure is what stopped progress: say which
    if stats.failed is not None:
        info["osqp_failure"] = stats.failed.value
    return RunResult(status, q_out, mu_out, info)


def _try_polish(pb, face, q, S, active, settings, limits, state, max_rounds: int = MAX_ROUNDS) -> bool:
    state.polishes += 1
    result = polish(pb, face, q, S, active, settings.tol, limits, settings.verbose, max_rounds)
    if state.best is None or result.gap < state.best.gap or (result.gap == state.best.gap
                                                             and result.F < state.best.F):
        state.best = result
    return result.gap <= settings.tol


def _loop(pb: Problem, settings: Settings, limits: Limits, face: FaceNewton, stats: QPStats,
          state: _State) -> SolveStatus:
    q = state.q
    nr = pb.norms(q)
    # the working rows start as the rows nearly tight at a nonzero start (none at zero, where
    # every row is tight but few bind at the optimum)
    working = (pb.G @ q <= START_ROWS * pb.group_slack_scale(q)) & pb.reading_rows(nr > 0)
    qp = SmoothedQP(pb, np.flatnonzero(~pb.dead), working, stats)
    if nr.max() > 0:
        e = E_WARM * float(nr.max())
        limits.tick()
        if _try_polish(pb, face, q, nr > 0, None, settings, limits, state, WARM_POLISH_ROUNDS):
            return SolveStatus.OPTIMAL
    else:
        # a light ridge to start from: beta / e about 1% of the mean curvature of the loss
        curv = float(pb.A.multiply(pb.A).sum()) / max(pb.N, 1)
        e = pb.beta / (1e-2 * max(curv, 1e-300))
    eps = EPS_START
    while True:
        limits.tick()
        step = qp.step(q, e, eps, limits)
        for _ in range(MAX_CUTS):
            if step is None or not qp.extend(step.x, CUT * eps):
                break
            limits.tick()
            step = qp.step(q, e, eps, limits, x0=step.x)
        if step is None:
            return SolveStatus.INACCURATE
        x, _ = project_feasible(pb, step.x, pb.norms(step.x) > 0)
        dq = x - q
        f0 = smoothed_value(pb, q, e)
        slope = float(smoothed_gradient(pb, q, e) @ dq)
        t = 1.0
        if slope < 0:
            while t > 1e-10 and smoothed_value(pb, q + t * dq, e) > f0 + 1e-4 * t * slope:
                t *= 0.5
        scale = max(float(pb.norms(q).max()), float(pb.norms(x).max()), 1e-300)
        centred = float(pb.norms(dq).max()) <= CENTER * e
        if settings.verbose:
            print(f"[osqp] e={e:.2e} eps={eps:.0e} osqp_it={step.iterations} slope={slope:.2e} t={t:.3g} "
                  f"centred={centred} F={pb.F(q):.12g} t={time.perf_counter():.2f}")
        if slope < 0 and t > 1e-10:
            q = q + t * dq
            state.q = q
        # e shrinks once F_e is minimised at the scale e: the QP's point moved no group by more
        # than CENTER * e (a group that has to grow from O(e) moves by O(e) per step)
        if not centred:
            # no descent, or OSQP stopped at its first check (the warm start already met eps):
            # the tolerance is too loose for this point; at its floor, F_e is minimised to what
            # OSQP resolves and e shrinks as if centred
            lazy = step.iterations <= LAZY_ITER or slope >= 0 or t <= 1e-10
            if not lazy:
                continue
            if eps > settings.eps:
                eps = max(eps * 0.1, settings.eps)
                continue
        if e <= E_FLOOR * scale:
            if eps <= settings.eps:
                return SolveStatus.INACCURATE  # both at their floors: what this method resolves
            eps = max(eps * 0.1, settings.eps)
            continue
        e = max(e * E_SHRINK, E_FLOOR * scale)
        eps = min(eps, max(EPS_PER_E * e / scale, settings.eps))
        # OSQP's multipliers of inactive rows are rounding (far below the others), not zero
        weight = step.mu * pb.row_norm
        active = weight > ACTIVE_MU * max(float(weight.max(initial=0.0)), 1e-300)
        if e <= POLISH_E * scale and _try_polish(pb, face, q, pb.norms(q) > SUPPORT_E * e, active,
                                                  settings, limits, state):
            return SolveStatus.OPTIMAL
