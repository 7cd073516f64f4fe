"""The proximal map of the regulariser in whitened coordinates.

In z coordinates (:mod:`.operators`) the regulariser of group (p, j) is ||q_pj|| = ||a * z_pj||
with a fixed positive weight vector a (1 / sigma), so a proximal step needs

    prox(w) = argmin_z  t ||a * z|| + 1/2 ||z - w||^2          (t > 0, one per group)

which is z = 0 when ||w / a|| <= t, and otherwise z_k = w_k mu / (mu + a_k^2) for the unique
mu > 0 with ||(diag(a^2) + mu I)^-1 (a * w)|| = t: the trust-region secular equation (More &
Sorensen 1983), solved by Newton's method on phi(mu) = 1 / ||p(mu)|| - 1 / t. phi is concave
and increasing, so from any start a Newton step lands left of the root (or at 0) and the
iterates then rise monotonically to it; each call starts from the previous call's mu (the
inputs of successive iterations of a method are close). With a = 1 it is the group
soft-threshold and one Newton step is exact.
"""

from __future__ import annotations

from typing import Optional

import torch

#: Newton steps at most; stop when |f(mu) / t - 1| <= RESIDUAL_RTOL[dtype] for every group (f =
#: the secular function's norm; quadratic convergence makes the last step land far below that)
NEWTON_MAX = 50
RESIDUAL_RTOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-2}


class EllipsoidProx:
    """argmin_z t ||weight * z|| + 1/2 ||z - W||^2 for every group z = Z[p, j] of W (P, m, r).

    Keeps the last mu per group as the next call's warm start. ``weight`` (r,) > 0.
    """

    def __init__(self, weight: torch.Tensor) -> None:
        self.weight = weight
        self.mu: Optional[torch.Tensor] = None
        self.newton_steps = 0
        self.calls = 0

    def __call__(self, W: torch.Tensor, t) -> torch.Tensor:
        dtype = W.dtype
        a2 = self.weight.to(dtype).square()
        tiny = torch.finfo(dtype).tiny
        # the stopping test reads the secular equation's relative residual, which rounding
        # leaves near the dtype's resolution
        rtol = RESIDUAL_RTOL[dtype] if dtype in RESIDUAL_RTOL else 1e-5
        b = W.square().mul_(a2)  # (a_k w_k)^2: ||a * z(mu)||^2 = mu^2 sum_k b_k / (mu + a_k^2)^2
        t = torch.as_tensor(t, dtype=dtype, device=W.device).expand(W.shape[:-1])
        zero = (W / self.weight.to(dtype)).norm(dim=-1) <= t  # 0 is optimal there
        mu = torch.zeros(W.shape[:-1], dtype=dtype, device=W.device)
        if self.mu is not None and self.mu.shape == mu.shape:
            mu = self.mu.to(dtype)
        inv = torch.empty_like(b)
        q = torch.empty_like(b)
        for step_count in range(1, NEWTON_MAX + 1):
            torch.add(a2, mu[..., None], out=inv).reciprocal_()
            torch.mul(b, inv, out=q).mul_(inv)
            f2 = q.sum(dim=-1)
            s3 = q.mul_(inv).sum(dim=-1)
            f = f2.sqrt()
            # Newton on phi(mu) = 1/f - 1/t: mu += (f/t - 1) f^2 / s3
            ratio = f / t - 1.0
            mu = (mu + ratio * f2 / s3.clamp_min(tiny)).clamp_min_(0).masked_fill_(zero, 0.0)
            if bool((ratio.abs() <= rtol).logical_or_(zero).all()):
                break
        self.newton_steps += step_count
        self.calls += 1
        self.mu = mu
        Z = W * (mu[..., None] / (mu[..., None] + a2))
        return Z.masked_fill_(zero[..., None], 0.0)


def ellipsoid_prox(W: torch.Tensor, weight: torch.Tensor, t) -> torch.Tensor:
    """One prox evaluation without warm start (see :class:`EllipsoidProx`)."""
    return EllipsoidProx(weight)(W, t)
