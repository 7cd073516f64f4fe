"""Active-set moves when the certified gap is open (step 5): release tight rows, let zero groups
enter one by one, or move the support and the flagged groups jointly with one OSQP QP."""

from __future__ import annotations

import numpy as np
import osqp
import scipy.linalg as sla
import scipy.sparse as sp

from .limits import Limits
from .problem import Problem, nnls
from .qp import QPStats, solve_qp


def release(pb: Problem, q, S, E, v, eq_res) -> np.ndarray:
    """Tight rows to release: in each pattern whose nonnegative fit misses stationarity, the rows
    whose least-squares multipliers are negative."""
    d, beta = pb.d, pb.beta
    # only a real miss of stationarity: the NNLS fit itself leaves ~1e-8 beta behind
    bad = np.flatnonzero(S & (eq_res > 1e-6 * beta))
    out = []
    if bad.size == 0:
        return np.zeros(0, dtype=np.int64)
    c_all = (pb.A.T @ v).reshape(pb.ng, d)
    nr = pb.norms(q)
    for p in np.unique(bad // pb.m):
        groups = pb.pattern_groups(p)
        groups = groups[S[groups]]
        rows = pb.pattern_rows(p, groups)
        rows = rows[E[rows]]
        if rows.size == 0:
            continue
        cols = pb.cols(groups)
        Mt = pb.G[rows][:, cols].toarray().T
        b = (beta * q[cols].reshape(-1, d) / nr[groups, None] - c_all[groups]).ravel()
        lam = np.linalg.lstsq(Mt, b, rcond=None)[0]
        neg = lam < -1e-12 * max(float(np.abs(lam).max()), 1e-300)
        out.append(rows[neg])
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def enter(pb: Problem, q, S, v, max_enter=8):
    """Move zero groups into the support along their steepest feasible directions.

    For a zero group g the best unit direction that keeps every tight row of its pattern
    feasible is the projection of c_g = A_g^T v onto that cone (NNLS); it decreases F iff its
    norm exceeds beta. The largest few move together (one-dimensional step lengths, then a
    backtracking line search with a ratio test on every row). Returns (q, S) or None.
    """
    d, beta = pb.d, pb.beta
    c_all = (pb.A.T @ v).reshape(pb.ng, d)
    gq = pb.G @ q
    slack_scale = pb.group_slack_scale(q)
    cand = []
    for g in np.flatnonzero(~S & ~pb.dead):
        p = g // pb.m
        M = pb.block1(g)
        if pb.two_layer_rows:
            r2 = pb.rows2(p)
            # nearly tight rows count as tight: a move that they stop after 1e-9 is no move
            r2 = r2[gq[r2] <= 1e-8 * slack_scale[r2]]
            if r2.size:
                M = np.vstack([M, pb.G[r2][:, g * d : (g + 1) * d].toarray()])
        lam, _ = nnls(M.T, -c_all[g])
        a = c_all[g] + M.T @ lam
        b = float(np.linalg.norm(a))
        if b > beta * (1 + 1e-9):
            cand.append((b, g, a / b))
    if not cand:
        return None
    cand.sort(key=lambda t: -t[0])
    dq = np.zeros(pb.N)
    entered = np.zeros(pb.ng, dtype=bool)
    for b, g, a in cand[:max_enter]:
        Aa = pb.A[:, g * d : (g + 1) * d] @ a
        curv = float(Aa @ Aa)
        if curv <= 0:
            continue
        dq[g * d : (g + 1) * d] = (b - beta) / curv * a
        entered[g] = True
    if not entered.any():
        return None
    gd = pb.G @ dq
    # rows the projection keeps feasible can read -1e-17: only clear decreases limit the step
    neg = gd < -1e-12 * pb.row_norm * float(np.abs(dq).max())
    alpha = 1.0
    if neg.any():
        alpha = min(1.0, float(np.min(np.maximum(gq[neg], 0.0) / -gd[neg])))
    f0 = pb.F(q)
    while alpha > 1e-6:
        if pb.F(q + alpha * dq) < f0:
            break
        alpha *= 0.5
    if alpha <= 1e-6:
        return None  # blocked at once: the joint QP step has to move these groups
    q = q + alpha * dq
    return q, S | entered


def joint_round(pb: Problem, q, S, cand, mu, eps, limits: Limits, stats: QPStats):
    """One sequential-QP round with OSQP over S and the candidate groups (a joint move).

    Model of ||q_g||: beta * (t_g + ||(I - u u^T) q_g||^2 / (2 eta_g)) with t_g >= 0,
    t_g >= u^T q_g (the Newton model with an exact kink at 0); u_g = q_g/||q_g|| on S, and for a
    candidate the direction of its certificate vector A_g^T v + (G^T mu)_g projected on its
    first-layer cone. Rows: those tight at q plus, lazily, any the QP solution violates.
    Returns (q, S) after a line search on F, or None when no decrease was found.
    """
    d, beta = pb.d, pb.beta
    v = pb.y - pb.A @ q
    Cg = (pb.A.T @ v + pb.G.T @ mu).reshape(pb.ng, d)
    groups = np.flatnonzero(S | cand)
    k = groups.size
    cols = pb.cols(groups)
    Qs = q[cols].reshape(k, d)
    nr = np.linalg.norm(Qs, axis=1)
    U = np.zeros((k, d))
    eta = np.zeros(k)
    scale_q = max(float(nr.max()), 1e-300)
    for a, g in enumerate(groups):
        if nr[a] > 0:
            U[a], eta[a] = Qs[a] / nr[a], nr[a]
        else:
            M = pb.block1(g)
            lam, _ = nnls(M.T, -Cg[g])
            w = Cg[g] + M.T @ lam
            U[a] = w / max(float(np.linalg.norm(w)), 1e-300)
            eta[a] = 1e-2 * scale_q if nr.max() > 0 else 1.0
    As = pb.A_dense[:, cols]
    H = As.T @ As
    delta = 1e-10 * max(float(np.trace(H)) / max(k * d, 1), 1e-300)
    B = beta / eta[:, None, None] * (np.eye(d)[None] - U[:, :, None] * U[:, None, :]) + delta * np.eye(d)[None]
    H = H + sla.block_diag(*B)
    Pm = sp.triu(sp.block_diag([sp.csc_matrix(H), sp.csc_matrix((k, k))]), format="csc")
    lin = np.r_[-(As.T @ pb.y) - delta * q[cols], np.full(k, beta)]
    Ut = sp.csr_matrix((-U.ravel(), (np.repeat(np.arange(k), d), np.arange(k * d))), shape=(k, k * d))
    Ik = sp.identity(k, format="csr")
    Gs = pb.G[:, cols].tocsr()
    touch = np.diff(Gs.indptr) > 0
    gq0 = Gs @ q[cols]
    W = touch & (gq0 <= 1e-9 * pb.row_norm * scale_q)
    x0 = np.r_[q[cols], np.maximum(0.0, np.einsum("kd,kd->k", U, Qs))]
    res = None
    for _ in range(30):
        Wi = np.flatnonzero(W)
        Acon = sp.vstack([sp.hstack([sp.csr_matrix((k, k * d)), Ik]), sp.hstack([Ut, Ik]),
                          sp.hstack([Gs[Wi], sp.csr_matrix((Wi.size, k))])], format="csc")
        nrow = Acon.shape[0]
        remaining = limits.remaining()
        solver = osqp.OSQP()
        solver.setup(Pm, lin, Acon, np.zeros(nrow), np.full(nrow, np.inf), verbose=False,
                     eps_abs=eps, eps_rel=eps, polishing=True, max_iter=10000,
                     time_limit=max(remaining, 1e-3))
        solver.warm_start(x=x0)
        res = solve_qp(solver, stats, limits)
        if res is None:
            return None
        x0 = res.x
        gq = Gs @ res.x[: k * d]
        viol = touch & ~W & (gq < -10 * eps * pb.row_norm * scale_q)
        if not viol.any():
            break
        W |= viol
    q_qp = np.zeros(pb.N)
    q_qp[cols] = res.x[: k * d]
    dq = q_qp - q
    f0 = pb.F(q)
    step = 1.0
    while step > 1e-6:
        if pb.F(q + step * dq) < f0:
            q_new = q + step * dq
            nr_new = pb.norms(q_new)
            S_new = nr_new > 1e-9 * max(float(nr_new.max()), 1e-300)
            q_new.reshape(pb.ng, d)[~S_new] = 0.0
            return q_new, S_new
        step *= 0.5
    return None
