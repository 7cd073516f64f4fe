"""The ``"osqp"`` adapter: options, warm-start policy, the Solution, and the registry entry."""

from __future__ import annotations

import time

import numpy as np
from threadpoolctl import threadpool_limits

from ...program import RestrictedProgram
from ...solution import Solution, SolveStatus
from ..registry import Backend, Capabilities
from .limits import Limits
from .problem import Problem
from .run import RunResult, Settings, run
from .warm import start_point, warm_variable

# A warm-start Solution goes straight to the active-set cycles when its projection onto the new
# cones is within WARM_GATE of its old objective, for at most DIRECT_WARM_ITERS face solves and
# at most WARM_BUDGET times the old solve's seconds (at least MIN_WARM_SECONDS).
WARM_GATE = 1.5
DIRECT_WARM_ITERS = 25
WARM_BUDGET = 1.0
MIN_WARM_SECONDS = 0.05
#: stage A from a warm point stops once a round lowers F by at most this (relative)
WARM_IRLS_STOP = 1e-4


def solve_osqp(program: RestrictedProgram, tol: float = 1e-8, time_limit: float = float("inf"),
               max_iter: int = 500, warm_start=None, verbose: bool = False, eps: float = 1e-5,
               feas_tol: float = 1e-9, irls_rounds: int = 4, warm_irls_rounds: int = 4) -> Solution:
    """Solve the restricted program with OSQP QPs and an exact face polish (see the package docstring).

    Args:
        tol: relative duality gap of the certificate that declares ``OPTIMAL``.
        time_limit: seconds; past it the best feasible point returns with ``TIME_LIMIT``.
        max_iter: outer iterations (the stage-A run plus one per face solve); past it
            ``ITERATION_LIMIT``.
        warm_start: a :class:`Solution` (patterns matched exactly or to the nearest old pattern,
            see :mod:`.warm`), the ``ParallelReLU`` the patterns came from, or a convex
            variable Q of the program's shape (P, m, d'), tensor or array.
        irls_rounds: reweighted OSQP rounds of step 1 from a zero start.
        warm_irls_rounds: the same from a warm point that does not take the direct path. A warm
            point is feasible but far from the optimum's face; a few rounds find the face, and
            every further round costs QPs that the active-set cycles would not need
            (``benchmarks/warm_from_network.py`` compares values, see BENCHMARKS.md).
        eps: OSQP's absolute/relative tolerance for the stage-A QPs (they only identify the face).
        feas_tol: largest cone-row violation accepted, in units of max(1, max|y|).
    """
    for name, value in (("tol", tol), ("eps", eps), ("feas_tol", feas_tol)):
        if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    if not (isinstance(time_limit, (int, float)) and time_limit > 0):
        raise ValueError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
    if not isinstance(max_iter, int) or isinstance(max_iter, bool) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    start = time.perf_counter()
    deadline = start + float(time_limit)
    q_init = warm_variable(program, warm_start)  # a warm start that does not fit raises
    settings = Settings(tol=tol, eps=eps, feas_tol=feas_tol, max_iter=max_iter, verbose=verbose,
                        irls_rounds=irls_rounds, warm_irls_rounds=warm_irls_rounds)
    # the dense algebra here is small (face bases, per-pattern blocks): threaded BLAS only adds
    # synchronisation, and competes with whatever else runs on the machine
    with threadpool_limits(limits=1, user_api="blas"):
        return _solve(program, q_init, warm_start, settings, start, deadline)


def _solve(program: RestrictedProgram, q_init, warm_start, settings: Settings, start: float,
           deadline: float) -> Solution:
    info = {"tol": settings.tol, "eps": settings.eps,
            "warm_start": type(warm_start).__name__ if warm_start is not None else None}
    best_q = None
    try:
        pb = Problem(program)
        q = start_point(pb, q_init, settings.feas_tol * pb.scale)
        best_q = q
        result = _run_from(pb, q, warm_start, settings, deadline, info)
        best_q = result.q
        info.update(result.info)
    except Exception as exc:  # a crash is a failed solve, never an exception downstream
        return Solution.from_variable(
            program, program.zeros() if best_q is None else program.unflatten(best_q),
            status=SolveStatus.FAILED, seconds=time.perf_counter() - start, iterations=0,
            solver="osqp", info={**info, "error": repr(exc)},
        )
    return Solution.from_variable(
        program, program.unflatten(result.q), status=result.status, seconds=time.perf_counter() - start,
        iterations=int(info.get("iterations", 0)), solver="osqp",
        multipliers=program.split_multipliers(result.mu), info=info,
    )


def _run_from(pb: Problem, q: np.ndarray, warm_start, settings: Settings, deadline: float,
              info: dict) -> RunResult:
    """The run(s) from the start point q: direct cycles from a good warm Solution (then a cold
    run if they do not certify), else one run with stage A."""
    direct = (isinstance(warm_start, Solution) and (pb.norms(q) > 0).any()
              and pb.F(q) <= WARM_GATE * float(warm_start.objective))
    if not direct:
        # cold: the fixed rounds from the ridge point, whose support is still far from the
        # optimum's; warm: the point is already near a face, so stop once a round stops paying off
        if warm_start is None:
            return run(pb, q, settings, Limits(deadline, settings.max_iter), settings.irls_rounds)
        return run(pb, q, settings, Limits(deadline, settings.max_iter), settings.warm_irls_rounds,
                   irls_rel_stop=WARM_IRLS_STOP)
    # a solution of a slightly changed set, projected, sits near the new optimum's face: the
    # active-set cycles from it directly (BENCHMARKS.md, "osqp warm"), within a budget of the
    # old solve's time, so a failed attempt costs about one cold solve
    budget = WARM_BUDGET * max(float(warm_start.seconds), MIN_WARM_SECONDS)
    first = run(pb, q, settings, Limits(min(deadline, time.perf_counter() + budget),
                                        min(settings.max_iter, DIRECT_WARM_ITERS)), 0)
    info["direct_warm"] = first.status.value
    if first.status == SolveStatus.OPTIMAL or time.perf_counter() >= deadline:
        return first
    # it stalled: a cold run (never worse than not having had the warm start)
    cold = run(pb, np.zeros(pb.N), settings,
               Limits(deadline, max(settings.max_iter - int(first.info["iterations"]), 1)),
               settings.irls_rounds)
    if cold.status != SolveStatus.OPTIMAL and pb.F(first.q) < pb.F(cold.q):
        return first
    return cold


BACKEND = Backend.from_function(
    "osqp", solve_osqp,
    Capabilities(warm_start=True, multipliers=True, devices=("cpu",), max_cone_entries=None, exact=False),
    "OSQP quadratic programs, an exact face polish and a duality-gap certificate",
)
