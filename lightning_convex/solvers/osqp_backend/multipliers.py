"""Cone multipliers mu >= 0 for a feasible q, and the duality-gap certificate they give (step 4).

With v = y - A q, any c in [0, beta / max_g ||A_g^T v + (G^T mu)_g||] makes c v dual feasible
(MATH.md section 5, :mod:`lightning_convex.duality`), so the fit aims at the smallest such
maximum: stationarity on the support, the minimax residual on the zero groups.
"""

from __future__ import annotations

import numpy as np

from ...duality import lower_bound, relative_gap
from .problem import Problem, nnls

#: Lawson reweighting rounds of the minimax fit on a pattern's zero groups
LAWSON_ITERS = 25
#: weight of the stationarity equations of the support against the zero groups' residuals
EQ_WEIGHT = 1e5


def fit_multipliers(pb: Problem, q: np.ndarray, S: np.ndarray, E: np.ndarray, v: np.ndarray):
    """Cone multipliers mu >= 0 (full length) fitted per pattern by NNLS.

    Equations: for g in S, (G^T mu)_g = beta u_g - A_g^T v (weighted); for a zero group, the
    smallest ||A_g^T v + (G^T mu)_g||. Unknowns: the rows in E (tight rows of S-groups) and
    every row of a zero group (all of them are tight at q_g = 0), second-layer rows of a
    pattern when tight. Returns (mu, eq_residual per S-group).
    """
    d, beta = pb.d, pb.beta
    c_all = (pb.A.T @ v).reshape(pb.ng, d)
    nr = pb.norms(q)
    mu = np.zeros(pb.C)
    eq_res = np.zeros(pb.ng)
    weight = EQ_WEIGHT
    gq = pb.G @ q
    tight = gq <= 1e-10 * pb.group_slack_scale(q)
    # A zero pattern that duplicates another one has the same c_g and rows: the multipliers of
    # its twin (tight for the twin, hence for the all-tight zero copy) certify it exactly, where
    # a fit of its own would only approach the tight minimax value beta.
    Sp = S.reshape(pb.P, pb.m).any(axis=1)
    twin = {}
    for key, members in pb.duplicates.items():
        live = [p for p in members if Sp[p]]
        if live:
            for p in members:
                if not Sp[p]:
                    twin[p] = live[0]
    order = [p for p in range(pb.P) if p not in twin] + list(twin)
    for p in order:
        if p in twin:
            src = twin[p]
            off1 = (p - src) * pb.n * pb.m
            r1 = np.concatenate([pb.rows1(g) for g in pb.pattern_groups(src)])
            mu[r1 + off1] = mu[r1]
            if pb.two_layer_rows:
                r2 = pb.rows2(src)
                mu[r2 + (p - src) * pb.n] = mu[r2]
            continue
        # dead groups stay in: shared second-layer multipliers reach their columns too
        groups = pb.pattern_groups(p)
        if pb.dead[groups].all():
            continue
        # complementarity allows mu > 0 on any tight row of the pattern (E is a subset of them)
        rows = pb.pattern_rows(p, groups)
        rows = rows[tight[rows] | E[rows]]
        ins = groups[S[groups]]
        if rows.size == 0:
            if ins.size:
                eq_res[ins] = np.linalg.norm(beta * q.reshape(pb.ng, d)[ins] / nr[ins, None] - c_all[ins], axis=1)
            continue
        cols = pb.cols(groups)
        Mt = pb.block(p, groups, rows).T  # (len(groups)*d, rows)
        b = -c_all[groups].copy()
        insS = S[groups]
        b[insS] += beta * q.reshape(pb.ng, d)[groups[insS]] / nr[groups[insS], None]
        wts = np.where(insS, weight ** 2, 1.0 / max(int((~insS).sum()), 1))
        # zero groups need max_g ||.|| <= beta, not the least sum of squares: Lawson's
        # reweighting (weights grow with the residual) moves the fit towards the minimax one
        best = None
        for _ in range(LAWSON_ITERS):
            Wr = np.repeat(np.sqrt(wts), d)
            lam, _ = nnls(Mt * Wr[:, None], b.ravel() * Wr)
            res = (Mt @ lam - b.ravel()).reshape(groups.size, d)
            rn = np.linalg.norm(res, axis=1)
            worst = float(rn[~insS].max()) if (~insS).any() else 0.0
            if best is None or worst < best[0]:
                best = (worst, lam, rn)
            if worst <= beta * (1 - 1e-6):
                break
            zw = np.where(insS, 0.0, wts * rn)
            zw = zw / max(float(zw.sum()), 1e-300)
            wts = np.where(insS, weight ** 2, np.maximum(zw, 1e-12))
        worst, lam, rn = best
        mu[rows] = lam
        eq_res[groups[insS]] = rn[insS]
    return mu, eq_res


def certificate(pb: Problem, q: np.ndarray, mu: np.ndarray):
    """(F, dual lower bound, relative gap, per-group ||A_g^T v + (G^T mu)_g||)."""
    v = pb.y - pb.A @ q
    Cg = (pb.A.T @ v + pb.G.T @ mu).reshape(pb.ng, pb.d)
    bound = np.linalg.norm(Cg, axis=1)
    F = pb.F(q)
    dual = lower_bound(v @ pb.y, v @ v, pb.beta, bound.max() if bound.size else 0.0).value
    return F, dual, relative_gap(F, dual), bound
