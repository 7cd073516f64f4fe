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
from .run import DEFAULT_EPS, DEFAULT_FEAS_TOL, RunResult, Settings, run
from .warm import start_point, warm_variable

def solve_osqp(program: RestrictedProgram, tol: float = 1e-6, time_limit: float = float("inf"),
               max_iter: int = 500, warm_start=None, verbose: bool = False,
               eps: float = DEFAULT_EPS, feas_tol: float = DEFAULT_FEAS_TOL) -> Solution:
    """Solve the restricted program with OSQP QPs and an exact face polish (see the package docstring).

    Args:
        tol: relative duality gap of the certificate that declares ``OPTIMAL`` (so the objective
            is then within tol relative of the optimum). The default is the project's bar for an
            exact solve, the same as the torch interior point's. The face polish usually lands
            far closer than its certificate: a support group of tiny norm, whose direction the
            float64 Newton steps resolve only so far, can hold the certified gap near 1e-7 with
            the objective right to 1e-9, so a tighter tol can end ``INACCURATE`` there.
        time_limit: seconds; past it the best feasible point returns with ``TIME_LIMIT``.
        max_iter: outer iterations (one per OSQP step or polish); past it ``ITERATION_LIMIT``.
        warm_start: a :class:`Solution` (patterns matched exactly or to the nearest old pattern,
            see :mod:`.warm`), the ``ParallelReLU`` the patterns came from, or a convex
            variable Q of the program's shape (P, m, d'), tensor or array.
        eps: OSQP's tightest absolute/relative tolerance (the steps start looser and tighten
            with the smoothing; exactness comes from the polish, not from OSQP).
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
    settings = Settings(tol=tol, eps=eps, feas_tol=feas_tol, max_iter=max_iter, verbose=verbose)
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
    """The run from the start point q (zero, or the warm start projected onto the cones)."""
    return run(pb, q, settings, Limits(deadline, settings.max_iter))


BACKEND = Backend.from_function(
    "osqp", solve_osqp,
    Capabilities(warm_start=True, multipliers=True, devices=("cpu",), max_cone_entries=None, exact=False),
    "smoothed proximal Newton steps as OSQP QPs, an exact face polish, a duality-gap certificate",
)
