"""How long does ONE OSQP QP over a whole restricted program take? (a floor for any OSQP method)

The program is the one ``benchmarks/solvers.py`` builds for the named data set; the QP is the
ridge-reweighted one (eta = 1: P = A^T A + beta I, all cone rows), solved cold at three
tolerances, next to Clarabel and CVXPY+Clarabel on the exact SOCP.

Usage:
    python benchmarks/single_qp.py acute-inflammation
    python benchmarks/single_qp.py "synthetic n=500 d=10"
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import osqp
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))

import solvers as bench  # noqa: E402

from lightning_convex import solve  # noqa: E402


def main(name: str):
    quick = not name.startswith("synthetic n=2000") and "d=30" not in name
    for label, prog, _, _ in bench.programs(quick):
        if label.startswith(name):
            break
    else:
        raise SystemExit(f"no program named {name!r}")
    A = prog.prediction_matrix().tocsc()
    G = prog.cone_matrix().tocsc()
    y = prog.y.double().numpy()
    n, N = A.shape
    print(f"{label}: n={n} N={N} cone rows={G.shape[0]} nnz(G)={G.nnz}")
    for solver in ("clarabel", "cvxpy"):
        t = time.perf_counter()
        sol = solve(prog, solver=solver)
        print(f"{solver}: {time.perf_counter() - t:.3f} s, F = {sol.objective:.10g}")
    for eps in (1e-3, 1e-4, 1e-5):
        t = time.perf_counter()
        P = sp.triu(A.T @ A + prog.beta * sp.identity(N), format="csc")
        qp = osqp.OSQP()
        qp.setup(P, -(A.T @ y), G, np.zeros(G.shape[0]), np.full(G.shape[0], np.inf), verbose=False,
                 eps_abs=eps, eps_rel=eps, max_iter=20000, polishing=False)
        t1 = time.perf_counter()
        res = qp.solve(raise_error=False)
        print(f"one OSQP QP, eps {eps:g}: setup {t1 - t:.3f} s, solve {time.perf_counter() - t1:.3f} s, "
              f"{res.info.iter} iterations, {res.info.status}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "acute-inflammation")
