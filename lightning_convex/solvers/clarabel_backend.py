"""Clarabel adapter: the restricted program as a second-order cone program (the exact reference).

With t_g >= ||q_g|| for every group g = (p, j), MATH.md section 3 reads

    minimize    1/2 ||A vec(Q) - y||^2 + beta * sum_g t_g
    subject to  G vec(Q) >= 0                   (nonnegative cone: the pattern cone rows)
                ||q_g||_2 <= t_g                (one second-order cone per group)

Clarabel gets it in one of two equivalent forms (see :func:`socp_data`): with the residual
r = A vec(Q) - y as a variable (diagonal quadratic term), or with the dense Hessian A^T A; which
factorises faster depends on n against N = P*m*d' (:func:`choose_formulation`). The
nonnegative-cone duals are the cone multipliers mu >= 0 (stationarity:
A^T v + G^T mu in beta * d||q||, v = y - A vec(Q))."""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from .._checks import check_int, check_number
from ..program import RestrictedProgram
from ..solution import Solution, SolveStatus
from .registry import Backend, Capabilities

STATUS_MAP = {
    "Solved": SolveStatus.OPTIMAL,
    "AlmostSolved": SolveStatus.INACCURATE,
    "InsufficientProgress": SolveStatus.INACCURATE,
    "MaxIterations": SolveStatus.ITERATION_LIMIT,
    "MaxTime": SolveStatus.TIME_LIMIT,
    "PrimalInfeasible": SolveStatus.INFEASIBLE,
    "AlmostPrimalInfeasible": SolveStatus.INFEASIBLE,
    "DualInfeasible": SolveStatus.UNBOUNDED,
    "AlmostDualInfeasible": SolveStatus.UNBOUNDED,
    "NumericalError": SolveStatus.NUMERICAL_ERROR,
    "Unsolved": SolveStatus.FAILED,
    "CallbackTerminated": SolveStatus.FAILED,
}


def _soc_block(num_groups: int, d: int, t_offset: int, nvar: int) -> sp.csr_matrix:
    """Rows (t_g, q_g) = -(-e_t, -e_q) x for each group g: ||q_g|| <= t_g as Clarabel cones."""
    g = np.arange(num_groups)
    rows = np.concatenate([g * (d + 1), (g[:, None] * (d + 1) + 1 + np.arange(d)[None, :]).ravel()])
    cols = np.concatenate([t_offset + g, (g[:, None] * d + np.arange(d)[None, :]).ravel()])
    return sp.csr_matrix((-np.ones(rows.size), (rows, cols)), shape=(num_groups * (d + 1), nvar))


def choose_formulation(program: RestrictedProgram) -> str:
    """``"hessian"`` (dense A^T A, no residual variable) when N = P m d' <= 2 n, else ``"residual"``.

    The LDL fill of the hessian form is dense in N; the residual form adds n variables whose
    fill grows with n. ``benchmarks/clarabel_formulations.py`` (BENCHMARKS.md, "Clarabel's two
    formulations") times both on programs on either side of the rule.
    """
    return "hessian" if program.num_variables <= 2 * program.n else "residual"


def socp_data(program: RestrictedProgram, formulation: str = "auto"):
    """(P, c, A, b, cone list sizes, offset of the cone rows) of the SOCP in Clarabel's form.

    ``"residual"``: x = [vec(Q), t, r], P = blkdiag(0, 0, I), rows: A vec(Q) - r = y (zero cone),
    -G vec(Q) + s = 0 (nonnegative cone), SOCs. ``"hessian"``: x = [vec(Q), t],
    P = blkdiag(A^T A, 0), c = [-A^T y, beta]; the constant 1/2 ||y||^2 is dropped.
    """
    if formulation == "auto":
        formulation = choose_formulation(program)
    A = program.prediction_matrix()
    G = program.cone_matrix()
    y = program.y.double().cpu().numpy()
    n, N = A.shape
    groups = program.P * program.m
    d = program.d
    C = G.shape[0]
    if formulation == "residual":
        nvar = N + groups + n
        Pobj = sp.diags(np.r_[np.zeros(N + groups), np.ones(n)]).tocsc()
        c = np.r_[np.zeros(N), np.full(groups, program.beta), np.zeros(n)]
        zero_block = sp.hstack([A, sp.csr_matrix((n, groups)), -sp.identity(n, format="csr")])
        blocks = [zero_block, sp.hstack([-G, sp.csr_matrix((C, groups + n))])]
        b = np.r_[y, np.zeros(C + groups * (d + 1))]
        zeros = n
    elif formulation == "hessian":
        nvar = N + groups
        H = (A.T @ A).tocsc()
        Pobj = sp.triu(sp.block_diag([H, sp.csc_matrix((groups, groups))]), format="csc")
        c = np.r_[-(A.T @ y), np.full(groups, program.beta)]
        blocks = [sp.hstack([-G, sp.csr_matrix((C, groups))])]
        b = np.zeros(C + groups * (d + 1))
        zeros = 0
    else:
        raise ValueError(f"formulation must be 'auto', 'residual' or 'hessian', got {formulation!r}")
    blocks.append(_soc_block(groups, d, N, nvar))
    Acon = sp.vstack(blocks).tocsc()
    return Pobj, c, Acon, b, (zeros, C, groups, d)


def solve_clarabel(program: RestrictedProgram, tol: float = 1e-9, max_iter: int = 200,
                   time_limit: float = float("inf"), verbose: bool = False, settings=None,
                   formulation: str = "auto", warm_start=None) -> Solution:
    """Solve with Clarabel. ``tol`` sets the gap and feasibility tolerances; ``settings`` (a dict)
    overrides any other Clarabel setting (an unknown name raises) (at the default 1e-9 Clarabel sometimes stops as
    "AlmostSolved", reported as INACCURATE: callers that need a status of OPTIMAL retry at 1e-8,
    as :func:`~lightning_convex.active_set_solve` does; 1e-9 keeps the numerically-zero groups
    small enough for :meth:`Solution.active_patterns`); ``formulation`` see :func:`socp_data`. ``warm_start``
    is accepted and ignored (interior-point methods do not warm start)."""
    import clarabel

    tol = check_number("tol", tol, 0.0, 1.0)
    max_iter = check_int("max_iter", max_iter, minimum=1)
    time_limit = check_number("time_limit", time_limit, allow_inf=True)
    opts = clarabel.DefaultSettings()
    unknown = sorted(key for key in (settings or {}) if not hasattr(opts, key))
    if unknown:
        raise ValueError(f"unknown Clarabel setting(s) {', '.join(map(repr, unknown))}")
    start = time.perf_counter()
    Pobj, c, Acon, b, (n, C, groups, d) = socp_data(program, formulation)
    cones = [clarabel.ZeroConeT(n)] if n else []
    if C:
        cones.append(clarabel.NonnegativeConeT(C))
    cones += [clarabel.SecondOrderConeT(d + 1)] * groups
    opts.verbose = bool(verbose)
    opts.max_iter = int(max_iter)
    opts.time_limit = float(time_limit)
    opts.tol_gap_abs = opts.tol_gap_rel = opts.tol_feas = float(tol)
    for key, value in (settings or {}).items():
        setattr(opts, key, value)
    N = program.num_variables
    try:
        result = clarabel.DefaultSolver(Pobj, c, Acon, b, cones, opts).solve()
    except Exception as exc:  # a backend crash is a failed solve, never an exception downstream
        return Solution.from_variable(
            program, program.zeros(), status=SolveStatus.FAILED, seconds=time.perf_counter() - start,
            iterations=0, solver="clarabel", info={"error": repr(exc)},
        )
    raw = str(result.status)
    status = STATUS_MAP.get(raw, SolveStatus.FAILED)
    x = np.asarray(result.x, dtype=np.float64)
    z = np.asarray(result.z, dtype=np.float64)
    if x.size != Acon.shape[1] or not np.all(np.isfinite(x)):
        x = np.zeros(Acon.shape[1])
        status = SolveStatus.FAILED
    multipliers = program.split_multipliers(np.maximum(z[n : n + C], 0.0)) if C else None
    return Solution.from_variable(
        program, program.unflatten(x[:N]), status=status, seconds=time.perf_counter() - start,
        iterations=result.iterations, solver="clarabel", multipliers=multipliers,
        info={"raw_status": raw, "tol": tol, "formulation": formulation},
    )


#: Clarabel forms the cone rows explicitly on the CPU; ``auto`` sends it programs up to this many
#: entries P n (m + 1) d' (every UCI and benchmark program), larger ones to the matrix-free backend.
MAX_CONE_ENTRIES = 20_000_000

BACKEND = Backend.from_function(
    "clarabel", solve_clarabel,
    Capabilities(warm_start=False, multipliers=True, devices=("cpu",), max_cone_entries=MAX_CONE_ENTRIES,
                 exact=True),
    "interior point on the SOCP (the exact reference)",
)
