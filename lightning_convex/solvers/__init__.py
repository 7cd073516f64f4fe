"""Solver backends for :class:`~lightning_convex.RestrictedProgram`.

``solve(program, solver=NAME, **options)`` dispatches to a small adapter per backend
(:mod:`.registry`). Each adapter builds its backend's problem from the program's shared
operators, maps the backend's status to a :class:`~lightning_convex.SolveStatus` through an
explicit table, and returns a :class:`~lightning_convex.Solution` whose objective and violation
are recomputed from Q by the program itself, so every backend is judged by the same arithmetic.

Backends:
    ``"clarabel"``: interior point on the SOCP through Clarabel's own API (the exact reference).
    ``"cvxpy"``: the same SOCP through CVXPY (``cvxpy_solver="CLARABEL"`` or ``"SCS"`` ...).
    ``"osqp"``: OSQP quadratic programs plus an exact face polish and a duality-gap certificate.
    ``"torch"``: on the program's device (interior point small, augmented Lagrangian large).
    ``"engine"``: the scale engine, whitened ADMM on the program's device with a certified stop.
    ``"auto"``: see :func:`choose_solver`.
"""

from . import clarabel_backend, cvxpy_backend, engine_backend, osqp_backend, torch_backend
from .registry import Backend, Capabilities, available_solvers, backend, choose_solver, register, solve

for _module in (clarabel_backend, cvxpy_backend, engine_backend, osqp_backend, torch_backend):
    register(_module.BACKEND)

__all__ = ["Backend", "Capabilities", "available_solvers", "backend", "choose_solver", "register", "solve"]
