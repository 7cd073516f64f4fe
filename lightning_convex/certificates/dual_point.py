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
from scipy.optimize import minimize

from ..rows import RowSync

class DualPoint(NamedTuple):
    """v (n_local,) with the full-data sums v.y and ||v||^2 and v . f_k per branch (K,)."""

    v: torch.Tensor
    vy: float
    vv: float
    branch_corr: torch.Tensor


def branch_scales(gram: torch.Tensor, Fy: torch.Tensor, cost: torch.Tensor) -> torch.Tensor:
    """alpha >= 0 minimising 1/2 ||sum_k alpha_k f_k - y||^2 + sum_k alpha_k cost_k (cost = beta R_k).

    ``gram`` = (f_k . f_l), ``Fy`` = (f_k . y) over all rows. A K-variable bound-constrained
    quadratic, solved on the CPU in float64 (identical on every process) by L-BFGS-B from
    alpha = 1 (the network), then polished by a Newton step on the free variables; never worse
    than alpha = 1.
    """
    G = gram.detach().double().cpu().numpy()
    h = (Fy - cost).detach().double().cpu().numpy()
    K = G.shape[0]
    ones = np.ones(K)

    def fun(a):
        Ga = G @ a
        return 0.5 * a @ Ga - h @ a, Ga - h

    res = minimize(fun, ones, jac=True, method="L-BFGS-B", bounds=[(0, None)] * K,
                   options=dict(maxiter=2000, ftol=1e-16, gtol=1e-13))
    alpha = np.maximum(res.x, 0.0) if np.all(np.isfinite(res.x)) else ones
    free = alpha > 0
    if free.any():
        trial = alpha.copy()
        trial[free] = np.linalg.lstsq(G[np.ix_(free, free)], h[free] - G[np.ix_(free, ~free)] @ alpha[~free],
                                      rcond=None)[0]
        if np.all(trial >= 0) and fun(trial)[0] <= fun(alpha)[0]:
            alpha = trial
    if fun(alpha)[0] > fun(ones)[0]:
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
