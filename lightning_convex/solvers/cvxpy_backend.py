"""CVXPY adapter: the restricted program as a CVXPY model, solved by any CVXPY conic solver.

Slower than the direct Clarabel adapter (model compilation), but it gives access to every solver
CVXPY supports (``cvxpy_solver="CLARABEL"``, ``"SCS"``, ``"ECOS"`` ...), which the benchmarks use.
"""

from __future__ import annotations

import time

import numpy as np

from ..program import RestrictedProgram
from ..solution import Solution, SolveStatus
from .registry import Backend, Capabilities

STATUS_MAP = {
    "optimal": SolveStatus.OPTIMAL,
    "optimal_inaccurate": SolveStatus.INACCURATE,
    "infeasible": SolveStatus.INFEASIBLE,
    "infeasible_inaccurate": SolveStatus.INFEASIBLE,
    "unbounded": SolveStatus.UNBOUNDED,
    "unbounded_inaccurate": SolveStatus.UNBOUNDED,
    "user_limit": SolveStatus.USER_LIMIT,
    "infeasible_or_unbounded": SolveStatus.INFEASIBLE,
    "solver_error": SolveStatus.FAILED,
}


def solve_cvxpy(program: RestrictedProgram, cvxpy_solver: str = "CLARABEL", verbose: bool = False,
                warm_start=None, **solver_options) -> Solution:
    """Solve through CVXPY; ``solver_options`` go to ``Problem.solve`` unchanged."""
    import cvxpy as cp

    if cvxpy_solver not in cp.installed_solvers():
        raise ValueError(f"CVXPY solver {cvxpy_solver!r} is not installed; installed: "
                         f"{', '.join(cp.installed_solvers())}")
    start = time.perf_counter()
    A = program.prediction_matrix()
    G = program.cone_matrix()
    y = program.y.double().cpu().numpy()
    q = cp.Variable(program.num_variables)
    groups = cp.reshape(q, (program.P * program.m, program.d), order="C")
    cost = 0.5 * cp.sum_squares(A @ q - y) + program.beta * cp.sum(cp.norm(groups, 2, axis=1))
    cone = G @ q >= 0
    problem = cp.Problem(cp.Minimize(cost), [cone])
    try:
        problem.solve(solver=cvxpy_solver, verbose=verbose, **solver_options)
        raw = str(problem.status)
    except cp.error.SolverError as exc:
        raw = "solver_error"
        info_error = repr(exc)
    else:
        info_error = None
    status = STATUS_MAP.get(raw, SolveStatus.FAILED)
    x = q.value
    if x is None or not np.all(np.isfinite(x)):
        x = np.zeros(program.num_variables)
        status = SolveStatus.FAILED if status == SolveStatus.OPTIMAL else status
    mu = cone.dual_value
    multipliers = program.split_multipliers(np.maximum(mu, 0.0)) if mu is not None else None
    stats = problem.solver_stats
    iterations = getattr(stats, "num_iters", None) if stats is not None else None
    info = {"raw_status": raw, "cvxpy_solver": cvxpy_solver}
    if info_error:
        info["error"] = info_error
    return Solution.from_variable(
        program, program.unflatten(x), status=status, seconds=time.perf_counter() - start,
        iterations=iterations or 0, solver=f"cvxpy-{cvxpy_solver.lower()}",
        multipliers=multipliers, info=info,
    )


BACKEND = Backend.from_function(
    "cvxpy", solve_cvxpy,
    Capabilities(warm_start=False, multipliers=True, devices=("cpu",), max_cone_entries=None, exact=False),
    "the SOCP through CVXPY (any conic solver; options pass through to Problem.solve)",
)
