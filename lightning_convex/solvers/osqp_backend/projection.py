"""Euclidean projection onto the cone rows (step 2 of the method): an exactly feasible point and
the rows it lands on."""

from __future__ import annotations

import numpy as np

from .problem import Problem, nnls


def project_feasible(pb: Problem, q: np.ndarray, S: np.ndarray):
    """Euclidean projection of q (support S) onto the cone rows, pattern by pattern, via NNLS.

    The projection of q_p onto {M x >= 0} is q_p + M^T lam with lam = argmin_{lam >= 0}
    ||q_p + M^T lam|| (its dual); the rows with lam > 0 are linearly independent (Lawson-Hanson
    keeps its passive set independent) and are returned as the initial tight set E. Rows enter
    the NNLS only when violated or nearly tight, and the check repeats until none is violated.
    Returns (q, E).
    """
    q = q.copy()
    E = np.zeros(pb.C, dtype=bool)
    gq = pb.G @ q
    for p in np.unique(np.flatnonzero(S) // pb.m):
        groups = pb.pattern_groups(p)
        groups = groups[S[groups]]
        cols = pb.cols(groups)
        rows = pb.pattern_rows(p, groups)
        scale = pb.row_norm[rows] * max(float(np.linalg.norm(q[cols])), 1e-300)
        gp = gq[rows]
        if (gp >= 0).all():
            continue
        Mfull = pb.G[rows][:, cols]
        cand = gp <= 1e-6 * scale
        x = q[cols]
        for _ in range(20):
            M = Mfull[np.flatnonzero(cand)].toarray()
            lam, _ = nnls(M.T, -q[cols])
            x = q[cols] + M.T @ lam
            gx = Mfull @ x
            viol = (gx < -1e-13 * scale) & ~cand
            if not viol.any():
                break
            cand |= viol
        else:
            # rows kept joining (a warm start from another pattern set can violate many):
            # the projection with every row of the pattern
            cand[:] = True
            lam, _ = nnls(Mfull.toarray().T, -q[cols], maxiter=50 * Mfull.shape[0])
            x = q[cols] + Mfull.T @ lam
        q[cols] = x
        E[rows[np.flatnonzero(cand)[lam > 0]]] = True
    return q, E
