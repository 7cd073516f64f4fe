"""A tried-and-dropped method, kept so its BENCHMARKS.md figures can be reproduced (issue 3).

Sequential QP with OSQP on the exact second-order model of the group norms: each round solves

    min 1/2 ||w||^2 + beta sum_g (t_g + ||(I - u_g u_g^T) q_g||^2 / (2 eta_g))
    s.t. A q - w = y,  G q >= 0,  t_g >= u_g . q_g,  t_g >= 0

(u_g = q_g / ||q_g||, eta_g = ||q_g|| on nonzero groups; the direction of A_g^T r otherwise),
with every cone row, one OSQP workspace updated in place (``update(Px=..., Ax=...)`` and warm
starts), then a line search on F. Measured on the six UCI programs of ``benchmarks/solvers.py``
(30 rounds, eps 1e-6): OSQP hit its 4000-iteration cap in nearly every round, 2-30 s per program,
relative error still 3e-6..1e-4. It is not used by the library.

Usage:
    python benchmarks/sqp_with_osqp.py [ROUNDS]
"""
import sys, time
from pathlib import Path
import numpy as np, scipy.sparse as sp, osqp
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from lightning_convex.solvers.osqp_backend import _Problem, _project_feasible, _fit_multipliers, _certificate
from lightning_convex import solve

def sqp(prog, iters=40, eps=1e-6, verbose=False):
    t0 = time.perf_counter()
    pb = _Problem(prog)
    A, G, y, beta = pb.A, pb.G.tocsc(), pb.y, pb.beta
    n, N, ng, d, C = pb.n, pb.N, pb.ng, pb.d, pb.C
    # variables x = [q (N), t (ng), w (n)]
    nv = N + ng + n
    # P: q-blocks dense d x d per group, w identity
    blocks = [np.ones((d, d)) for _ in range(ng)]
    Pq = sp.block_diag(blocks, format='csc')
    Pfull = sp.block_diag([Pq, sp.csc_matrix((ng, ng)), sp.identity(n)], format='csc')
    Pfull = sp.triu(Pfull, format='csc')
    # constraints: [A, 0, -I] = y ; [G,0,0] >= 0 ; [-U, I, 0] >= 0 ; [0, I, 0] >= 0
    U = sp.block_diag([np.ones((1, d)) for _ in range(ng)], format='csc')  # ng x N
    Cm = sp.vstack([
        sp.hstack([A, sp.csc_matrix((n, ng)), -sp.identity(n)]),
        sp.hstack([G, sp.csc_matrix((C, ng + n))]),
        sp.hstack([-U, sp.identity(ng), sp.csc_matrix((ng, n))]),
        sp.hstack([sp.csc_matrix((ng, N)), sp.identity(ng), sp.csc_matrix((ng, n))]),
    ], format='csc')
    l = np.concatenate([y, np.zeros(C + 2 * ng)])
    u = np.concatenate([y, np.full(C + 2 * ng, np.inf)])
    qv = np.concatenate([np.zeros(N), beta * np.ones(ng), np.zeros(n)])
    # locate the U entries in Cm.data: rows n+C .. n+C+ng, cols < N
    Cm.sort_indices()
    coo_rows = Cm.indices
    cols_of = np.repeat(np.arange(Cm.shape[1]), np.diff(Cm.indptr))
    uidx = np.flatnonzero((coo_rows >= n + C) & (coo_rows < n + C + ng) & (cols_of < N))
    # order of uidx entries: csc by column -> column index = q index; group = col // d
    ucol = cols_of[uidx]
    Pfull.sort_indices()
    prow = Pfull.indices
    pcol = np.repeat(np.arange(nv), np.diff(Pfull.indptr))
    pq = np.flatnonzero(pcol < N)
    def values(q, eta, ugrp):
        # P entries: beta * (I - u u^T)/eta for groups
        gi = pcol[pq] // d
        a, b = prow[pq] % d, pcol[pq] % d
        Px = Pfull.data.copy()
        Px[pq] = beta * ((a == b) - ugrp[gi, a] * ugrp[gi, b]) / eta[gi]
        Ax = Cm.data.copy()
        Ax[uidx] = -ugrp[ucol // d, ucol % d]
        return Px, Ax
    q = np.zeros(N)
    r = y - A @ q
    c = (A.T @ r).reshape(ng, d)
    ugrp = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-300)
    eta = np.full(ng, 1.0)
    Px, Ax = values(q, eta, ugrp)
    solver = osqp.OSQP()
    solver.setup(sp.csc_matrix((Px, Pfull.indices, Pfull.indptr), shape=Pfull.shape), qv,
                 sp.csc_matrix((Ax, Cm.indices, Cm.indptr), shape=Cm.shape), l, u,
                 verbose=False, eps_abs=eps, eps_rel=eps, max_iter=4000, polishing=False,
                 warm_starting=True, adaptive_rho=True)
    Fq = pb.F(q)
    tot_it = 0
    hist = []
    for it in range(iters):
        res = solver.solve(raise_error=False)
        tot_it += res.info.iter
        qn = res.x[:N]
        # line search on F
        dlt = qn - q
        alpha = 1.0
        while alpha > 1e-4:
            qt = q + alpha * dlt
            Ft = pb.F(qt)
            if Ft <= Fq + 1e-14 * abs(Fq):
                break
            alpha *= 0.5
        q, Fq = qt, Ft
        hist.append((Fq, res.info.iter, alpha, res.info.status))
        nr = pb.norms(q)
        r = y - A @ q
        c = (A.T @ r).reshape(ng, d)
        big = nr > 1e-9 * max(nr.max(), 1e-300)
        qg = q.reshape(ng, d)
        ugrp = np.where(big[:, None], qg / np.maximum(nr, 1e-300)[:, None], c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-300))
        eta = np.where(big, nr, max(nr.max(), 1e-3))
        Px, Ax = values(q, eta, ugrp)
        solver.update(Px=Px, Ax=Ax)
        solver.warm_start(x=res.x, y=res.y)
        if verbose: print(it, Fq, res.info.iter, alpha, res.info.status, big.sum())
    return q, time.perf_counter() - t0, tot_it, hist, pb

if __name__ == '__main__':
    import solvers as bench

    for label, prog, _, _ in bench.programs(True):
        if label.startswith('synthetic'):
            continue
        ref = solve(prog, solver='clarabel', tol=1e-10)
        q, t, it, hist, pb = sqp(prog, iters=int(sys.argv[1]) if len(sys.argv) > 1 else 30)
        print(label, f"{t:.3f}s osqp-iters {it}", 'err', (hist[-1][0] - ref.objective) / ref.objective, 'viol', max(0, -(pb.G @ q).min()))
        print('   ', [f"{(h[0]-ref.objective)/ref.objective:.1e}/{h[1]}" for h in hist])
