"""Solver backends for :class:`~lightning_convex.RestrictedProgram`.

``solve(program, solver=NAME, **options)`` dispatches to a small adapter per backend. Each adapter
builds its backend's problem from the program's shared operators, maps the backend's status to a
:class:`~lightning_convex.SolveStatus` through an explicit table, and returns a
:class:`~lightning_convex.Solution` whose objective and violation are recomputed from Q by the
program itself, so every backend is judged by the same arithmetic.

Backends:
    ``"clarabel"``: interior point on the SOCP through Clarabel's own API (the exact reference).
    ``"cvxpy"``: the same SOCP through CVXPY (``cvxpy_solver="CLARABEL"`` or ``"SCS"`` ...).
    ``"osqp"``: OSQP quadratic programs plus an exact face polish and a duality-gap certificate.
    ``"torch"``: matrix-free on the program's device (interior point small, ALM large).
    ``"auto"``: see :func:`choose_solver`.
"""

from __future__ import annotations

from typing import Callable, Dict

from ..program import RestrictedProgram
from ..solution import Solution

_BACKENDS: Dict[str, Callable[..., Solution]] = {}


def register_backend(name: str, fn: Callable[..., Solution]) -> None:
    """Register ``fn(program, **options) -> Solution`` under ``name``."""
    _BACKENDS[name] = fn


def available_solvers() -> list:
    return sorted(_BACKENDS) + ["auto"]


def choose_solver(program: RestrictedProgram) -> str:
    """The backend ``solver="auto"`` uses: Clarabel, the exact interior-point reference.

    The rule comes from ``benchmarks/solvers.py`` (BENCHMARKS.md, "Restricted solves"): "osqp"
    reaches the same optimum but cold it was 6-59x slower than CVXPY+Clarabel on every UCI
    program (about 4e3 cone rows) and 10x slower on synthetic n = 500, d = 30; it was faster on
    the two synthetic d = 10 programs (n = 500: 8.6 s vs Clarabel 12 s; n = 2000: 21 s vs
    Clarabel 27 s and CVXPY+Clarabel 109 s). Its warm starts from a changed set's solution were
    1.3-12x faster than its cold solves on all six UCI programs (faster than CVXPY+Clarabel on
    one).
    Two programs support no size rule, so ask for ``solver="osqp"`` (or ``"torch"``) by name.
    """
    return "clarabel"


def solve(program: RestrictedProgram, solver: str = "auto", **options) -> Solution:
    """Solve the restricted program with the named backend.

    Common options (each backend documents its own extras): ``tol`` (stopping tolerance),
    ``max_iter``, ``time_limit`` (seconds), ``verbose``. A backend never raises for a failed solve:
    it returns a Solution whose ``status`` says what happened; check ``solution.is_optimal``.
    """
    if not isinstance(program, RestrictedProgram):
        raise TypeError(f"program must be a RestrictedProgram, got {type(program).__name__}")
    name = choose_solver(program) if solver == "auto" else solver
    if name not in _BACKENDS:
        raise ValueError(f"unknown solver {solver!r}; available: {', '.join(available_solvers())}")
    return _BACKENDS[name](program, **options)


from . import clarabel_backend as _clarabel  # noqa: E402,F401  (registers "clarabel")
from . import cvxpy_backend as _cvxpy  # noqa: E402,F401  (registers "cvxpy")
from . import osqp_backend as _osqp  # noqa: E402,F401  (registers "osqp")
from . import torch_backend as _torch  # noqa: E402,F401  (registers "torch")
