"""Euclidean projection onto the cone rows (step 2 of the method): an exactly feasible point and
the rows it lands on."""

from __future__ import annotations

import numpy as np

from .problem import Problem, nnls

#: violations below this (relative to ||row|| ||x||) are rounding, not infeasibility
ROUNDING = 1e-12


def nearest_in_cone(M, x: np.ndarray, scale):
    """argmin ||x' - x|| over {M x' >= 0}, and the rows it lands on (a bool mask over M's rows).

    The projection is x + M^T lam with lam = argmin_{lam >= 0} ||x + M^T lam|| (its dual); the
    rows with lam > 0 are linearly independent (Lawson-Hanson keeps its passive set independent).
    Rows enter the NNLS only when violated or nearly tight (relative to ``scale``), and the check
    repeats until none is violated. ``M`` is dense or sparse.
    """
    on = np.zeros(M.shape[0], dtype=bool)
    gx = M @ x
    # a row violated at rounding level is met: a face basis (SVD) leaves ~1e-16 relative residue
    # on the rows that are tight along it, and projecting that away could only shrink x to 0
    if (gx >= -ROUNDING * scale).all():
        return x, on
    dense = M.toarray() if hasattr(M, "toarray") else M
    cand = gx <= 1e-6 * scale
    y, lam = x, np.zeros(0)
    for _ in range(20):
        Mc = dense[cand]
        lam, _ = nnls(Mc.T, -x)
        y = x + Mc.T @ lam
        viol = (dense @ y < -ROUNDING * scale) & ~cand
        if not viol.any():
            break
        cand |= viol
    else:
        # rows kept joining (a warm start from another pattern set can violate many):
        # the projection with every row
        cand[:] = True
        lam, _ = nnls(dense.T, -x, maxiter=50 * dense.shape[0])
        y = x + dense.T @ lam
    if float(np.linalg.norm(y)) <= ROUNDING * float(np.linalg.norm(x)):
        return np.zeros_like(x), on  # the cone has no room near x: its projection is 0
    on[np.flatnonzero(cand)[lam > 0]] = True
    return y, on


def project_feasible(pb: Problem, q: np.ndarray, S: np.ndarray):
    """Euclidean projection of q (support S) onto the cone rows, pattern by pattern
    (:func:`nearest_in_cone`). Returns (q, E) with E the rows the projection lands on."""
    q = q.copy()
    E = np.zeros(pb.C, dtype=bool)
    gq = pb.G @ q
    for p in np.unique(np.flatnonzero(S) // pb.m):
        groups = pb.pattern_groups(p)
        groups = groups[S[groups]]
        cols = pb.cols(groups)
        rows = pb.pattern_rows(p, groups)
        if (gq[rows] >= 0).all():
            continue
        scale = pb.row_norm[rows] * max(float(np.linalg.norm(q[cols])), 1e-300)
        q[cols], on = nearest_in_cone(pb.block(p, groups, rows), q[cols], scale)
        E[rows[on]] = True
    return q, E
