"""Second-order cone algebra on batches, for the interior point.

Each row u = (u0, u1) of a (G, k) batch is one cone {u0 >= ||u1||}; J = diag(1, -I). The
formulas are those of Vandenberghe, "The CVXOPT linear and quadratic cone program solvers"
(2010): the Jordan product, its inverse, the largest step inside the cone, and the
Nesterov-Todd scaling.
"""

from __future__ import annotations

import math

import torch


def jdot(u, v):
    """The J inner product u0 v0 - u1.v1 (jdot(u, u) = det u)."""
    return u[:, 0] * v[:, 0] - (u[:, 1:] * v[:, 1:]).sum(dim=1)


def soc_prod(u, v):
    """The Jordan product u o v = (u.v, u0 v1 + v0 u1)."""
    return torch.cat([(u * v).sum(dim=1, keepdim=True), u[:, :1] * v[:, 1:] + v[:, :1] * u[:, 1:]], dim=1)


def soc_ldiv(lam, v):
    """w with lam o w = v (the inverse of the arrow matrix of lam)."""
    det = jdot(lam, lam)
    w0 = (lam[:, 0] * v[:, 0] - (lam[:, 1:] * v[:, 1:]).sum(dim=1)) / det
    w1 = (v[:, 1:] - lam[:, 1:] * w0[:, None]) / lam[:, :1]
    return torch.cat([w0[:, None], w1], dim=1)


def soc_step(u, du):
    """Largest alpha with u + alpha du in the cone (u interior), per cone; inf when unbounded."""
    a = jdot(du, du)
    b = 2 * jdot(u, du)
    c = jdot(u, u)
    disc = b * b - 4 * a * c
    denom = -b + torch.sqrt(disc.clamp_min(0))
    # 2c / (-b + sqrt(disc)) is the smallest positive root in every case (a > 0, < 0, = 0)
    alpha = torch.where((disc >= 0) & (denom > 0), 2 * c / denom.clamp_min(1e-300),
                        torch.full_like(c, math.inf))
    return torch.where(alpha > 0, alpha, torch.full_like(c, math.inf))


def nn_step(u, du):
    """Largest alpha with u + alpha du >= 0 (u > 0) over nonnegative rows; inf when unbounded."""
    neg = du < 0
    if not bool(neg.any()):
        return math.inf
    return float((-u[neg] / du[neg]).min())


def nt_scaling(s, z):
    """Nesterov-Todd scaling of each cone: W = eta * Wbar with W z = W^-1 s (= lambda)."""
    ns = torch.sqrt(jdot(s, s))
    nz = torch.sqrt(jdot(z, z))
    sb = s / ns[:, None]
    zb = z / nz[:, None]
    gamma = torch.sqrt((1 + (sb * zb).sum(dim=1)) / 2)
    Jzb = torch.cat([zb[:, :1], -zb[:, 1:]], dim=1)
    wb = (sb + Jzb) / (2 * gamma[:, None])
    k = s.shape[1]
    Wb = torch.empty(s.shape[0], k, k, dtype=s.dtype, device=s.device)
    Wb[:, 0, 0] = wb[:, 0]
    Wb[:, 0, 1:] = wb[:, 1:]
    Wb[:, 1:, 0] = wb[:, 1:]
    Wb[:, 1:, 1:] = torch.eye(k - 1, dtype=s.dtype, device=s.device) + \
        wb[:, 1:, None] * wb[:, None, 1:] / (1 + wb[:, 0])[:, None, None]
    eta = torch.sqrt(ns / nz)
    return Wb, eta


def bmv(M, v):
    """Batched matrix-vector product."""
    return torch.bmm(M, v[:, :, None])[:, :, 0]


def flip(M):
    """J M J for a batch of (k, k) matrices."""
    out = M.clone()
    out[:, 0, 1:] *= -1
    out[:, 1:, 0] *= -1
    return out

