"""The dual point v of a network's certificate (MATH.md section 5).

The bound g(c v) is valid for any v, but it is only tight for a v near the dual optimum, which
is the residual y - A Q* of the restricted optimum. The raw residual y - f(X) of a network still
in training can violate the dual constraint badly along its own branches: a branch that is too
large or too small leaves v . f_k / R_k far from beta, and the dual scaling c must then shrink v
for every pattern. Rescaling each branch optimally, v = y - sum_k alpha_k f_k(X) with

    alpha = argmin_{alpha >= 0} 1/2 ||sum_k alpha_k f_k - y||^2 + beta sum_k alpha_k R_k,

removes that: at the minimiser every branch with alpha_k > 0 has v . f_k = beta R_k, exactly the
dual constraint along its own direction. alpha >= 0 keeps each branch in its cone, so the
rescaled network stays a feasible point of S, and at a restricted optimum alpha = 1.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ..rows import RowSync


#: the kinds :func:`dual_point` makes
DUAL_POINTS = ("scaled", "network")


class DualPoint(NamedTuple):
    """v (n_local,) with the full-data sums v.y and ||v||^2 and v . f_k per branch (K,)."""

    v: torch.Tensor
    vy: float
    vv: float
    branch_corr: torch.Tensor


def _active_set_qp(G: np.ndarray, h: np.ndarray) -> np.ndarray:
    """argmin_{a >= 0} 1/2 a'Ga - h'a for a positive definite ``G`` by the Lawson-Hanson
    active-set method (the NNLS algorithm with G, h in place of F'F, F'y): free variables are
    added one at a time by the largest descent slope h - G a and the free subproblem is solved
    exactly. Finite and exact up to rounding, where a first-order method crawls on the
    ill-conditioned Gram matrices of correlated branches."""
    K = G.shape[0]
    a = np.zeros(K)
    free = np.zeros(K, dtype=bool)
    tol = 1e-12 * max(1.0, float(np.abs(h).max(initial=0.0)), float(np.abs(G).max(initial=0.0)))
    for _ in range(3 * K + 3):
        w = h - G @ a
        w[free] = -np.inf
        j = int(np.argmax(w)) if K else 0
        if not K or w[j] <= tol:
            break
        free[j] = True
        for _ in range(3 * K + 3):
            z = np.zeros(K)
            z[free] = np.linalg.solve(G[np.ix_(free, free)], h[free])
            if np.all(z[free] > 0):
                a = z
                break
            # step from a towards z until the first free variable reaches 0, which leaves
            blocking = free & (z <= 0)
            step = np.min(a[blocking] / np.maximum(a[blocking] - z[blocking], 1e-300))
            a = a + step * (z - a)
            free &= a > tol
            a[~free] = 0.0
            if not free.any():
                break
    return np.maximum(a, 0.0)


def branch_scales(gram: torch.Tensor, Fy: torch.Tensor, cost: torch.Tensor) -> torch.Tensor:
    """alpha >= 0 minimising 1/2 ||sum_k alpha_k f_k - y||^2 + sum_k alpha_k cost_k (cost = beta R_k).

    ``gram`` = (f_k . f_l), ``Fy`` = (f_k . y) over all rows. A K-variable bound-constrained
    quadratic, solved exactly on the CPU in float64 (identical on every process) by an
    active-set method; never worse than alpha = 1 (the network).
    """
    G = gram.detach().double().cpu().numpy()
    h = (Fy - cost).detach().double().cpu().numpy()
    ones = np.ones(G.shape[0])

    def value(a):
        return 0.5 * a @ G @ a - h @ a

    # a ridge of rounding size makes G definite (two identical or dead branches make it singular),
    # so the active-set method cannot cycle; the free variables are then solved without it
    ridge = 1e-12 * max(float(np.trace(G)), 1e-300)
    try:
        alpha = _active_set_qp(G + ridge * np.eye(len(ones)), h)
    except np.linalg.LinAlgError:  # not definite after all (non-finite entries): the network's own
        alpha = ones
    free = alpha > 0
    if free.any() and np.all(np.isfinite(G)):
        trial = alpha.copy()
        trial[free] = np.linalg.lstsq(G[np.ix_(free, free)], h[free] - G[np.ix_(free, ~free)] @ alpha[~free],
                                      rcond=None)[0]
        if np.all(trial >= 0) and value(trial) <= value(alpha):
            alpha = trial
    if not np.all(np.isfinite(alpha)) or value(alpha) > value(ones):
        alpha = ones
    return torch.as_tensor(alpha, dtype=gram.dtype, device=gram.device)


def dual_point(kind: str, y, outputs, gram, Fy, cost, sync: RowSync) -> DualPoint:
    """The dual point ``kind``: ``"scaled"`` (the module doc) or ``"network"`` (v = y - f(X)).

    ``outputs`` (K, n_local) are the branch outputs f_k(X) on this process's rows, ``gram``,
    ``Fy`` their full-data products, ``cost`` = beta R_k.
    """
    if kind == "scaled":
        alpha = branch_scales(gram, Fy, cost)
    elif kind == "network":
        alpha = torch.ones(outputs.shape[0], dtype=outputs.dtype, device=outputs.device)
    else:
        raise ValueError(f"dual_point must be 'scaled' or 'network', got {kind!r}")
    v = y - alpha @ outputs
    sums = sync.sum(torch.stack([v.square().sum(), (v * y).sum()]))
    return DualPoint(v, float(sums[1]), float(sums[0]), Fy - gram @ alpha)
