"""OSQP's statuses and one inner QP solve (the smoothed steps' QPs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import osqp

from ...solution import SolveStatus
from .limits import Limits

#: OSQP's status (by ``osqp.SolverStatus`` name) -> SolveStatus, for the inner QPs.
STATUS_MAP = {
    "OSQP_SOLVED": SolveStatus.OPTIMAL,
    "OSQP_SOLVED_INACCURATE": SolveStatus.INACCURATE,
    "OSQP_PRIMAL_INFEASIBLE": SolveStatus.INFEASIBLE,
    "OSQP_PRIMAL_INFEASIBLE_INACCURATE": SolveStatus.INFEASIBLE,
    "OSQP_DUAL_INFEASIBLE": SolveStatus.UNBOUNDED,
    "OSQP_DUAL_INFEASIBLE_INACCURATE": SolveStatus.UNBOUNDED,
    "OSQP_MAX_ITER_REACHED": SolveStatus.ITERATION_LIMIT,
    "OSQP_TIME_LIMIT_REACHED": SolveStatus.TIME_LIMIT,
    "OSQP_NON_CVX": SolveStatus.NUMERICAL_ERROR,
    "OSQP_SIGINT": SolveStatus.FAILED,
    "OSQP_UNSOLVED": SolveStatus.FAILED,
}

#: inner QP outcomes whose point is still used (a line search on F guards every step taken)
USABLE = (SolveStatus.OPTIMAL, SolveStatus.INACCURATE, SolveStatus.ITERATION_LIMIT)


@dataclass
class QPStats:
    """Counters of one run's inner QPs, and the last inner failure (what stopped progress)."""

    qp_solves: int = 0
    osqp_iterations: int = 0
    failed: Optional[SolveStatus] = None


def qp_status(result) -> SolveStatus:
    """The SolveStatus of an OSQP result (a status a later OSQP adds counts as a failure)."""
    return STATUS_MAP.get(osqp.SolverStatus(result.info.status_val).name, SolveStatus.FAILED)


def solve_qp(solver: "osqp.OSQP", stats: QPStats, limits: Limits):
    """Solve a set-up OSQP problem: its result when the point is usable, else ``None`` with the
    failure recorded in ``stats``. OSQP running out of its time limit stops the run."""
    res = solver.solve(raise_error=False)
    stats.qp_solves += 1
    stats.osqp_iterations += int(res.info.iter)
    status = qp_status(res)
    if status == SolveStatus.TIME_LIMIT:
        limits.out_of_time()
    if status not in USABLE or res.x is None or not np.all(np.isfinite(res.x)):
        stats.failed = status if status not in USABLE else SolveStatus.NUMERICAL_ERROR
        return None
    return res
