"""From a convex solution back to a network (MATH.md section 4, Proposition 1).

For pattern p with Q_p = [q_p1 .. q_pm], rho_j = ||q_pj||, t = sum_j rho_j > 0, one branch::

    W1[:, j] = s_j q_pj / sqrt(rho_j t)   (0 where rho_j = 0)
    w2[j]    = s_j sig sqrt(rho_j / t)
    w3       = sig t
    paper form: w2 *= sqrt(t), w3 /= sqrt(t)   (then ||W1||_F = 1 and ||w2|| = |w3| = sqrt(t))

Depth 2 (m = 1, s = sig): u = s q / sqrt(rho), w3 = sig sqrt(rho), the same in both forms.
The branch reproduces D2_p * sum_j D1_pj X q_pj exactly whenever Q_p lies in its cone, and its
regularizer equals t, so the rebuilt network's J equals the convex objective.
"""

from __future__ import annotations

from typing import Optional

import torch

from ._checks import check_regularization
from .model import ParallelReLU
from .solution import Solution


def branch_weights(solution: Solution, regularization: str = "path"):
    """(W1 (P, d', m), w2 (P, m) or None, w3 (P,)) for every pattern of the solution, float64."""
    check_regularization(regularization)
    program = solution.program
    Q = solution.Q.double()
    s = program.patterns.s.to(Q)
    sig = program.patterns.sig.to(Q)
    rho = Q.norm(dim=2)  # (P, m)
    t = rho.sum(dim=1)  # (P,)
    if program.depth == 2:
        safe = torch.where(rho[:, 0] > 0, rho[:, 0], torch.ones_like(t))
        u = s[:, :, None] * Q / safe.sqrt()[:, None, None]
        u = torch.where(rho[:, 0, None, None] > 0, u, torch.zeros_like(u))
        return u.transpose(1, 2).contiguous(), None, sig * rho[:, 0].sqrt()
    safe_t = torch.where(t > 0, t, torch.ones_like(t))
    denom = (rho * safe_t[:, None]).sqrt()
    W1 = s[:, :, None] * Q / torch.where(denom > 0, denom, torch.ones_like(denom))[:, :, None]
    W1 = torch.where(rho[:, :, None] > 0, W1, torch.zeros_like(W1))
    w2 = s * sig[:, None] * (rho / safe_t[:, None]).sqrt()
    w3 = sig * t
    if regularization == "paper":
        w2 = w2 * t.sqrt()[:, None]
        w3 = w3 / safe_t.sqrt()
    return W1.transpose(1, 2).contiguous(), w2, w3


def to_network(solution: Solution, regularization: str = "path", rtol: float = 1e-9,
               branches: Optional[int] = None, dtype: Optional[torch.dtype] = None) -> ParallelReLU:
    """A :class:`ParallelReLU` with one branch per nonzero pattern of ``solution``.

    Patterns with t_p <= ``rtol`` * max t are numerical zeros and get no branch. ``branches``
    (>= the number of nonzero patterns) pads with zero branches; ``dtype`` defaults to the
    program's (float64), so the rebuilt network reproduces the convex objective to rounding.
    """
    active = solution.active_patterns(rtol)
    count = int(active.sum())
    K = max(count, 1) if branches is None else branches
    if K < count:
        raise ValueError(f"the solution has {count} nonzero patterns but branches={K}")
    program = solution.program
    net = ParallelReLU(
        program.in_features, program.m, K, depth=program.depth, bias=program.bias,
        regularization=regularization,
    ).to(device=program.device, dtype=dtype or program.dtype)
    return load_solution_(net, solution, rtol=rtol)


@torch.no_grad()
def load_solution_(net: ParallelReLU, solution: Solution, rtol: float = 1e-9) -> ParallelReLU:
    """Write ``solution`` into ``net``'s K branches in place and return ``net``.

    Nonzero patterns fill branches 0, 1, ... in pattern order; every spare branch becomes exactly
    zero (W1, w2, w3 = 0), contributing nothing to f or R. Refuses (ValueError) a solution with
    more than K nonzero patterns or one built for another architecture; the network is left
    untouched then. The network's own regularization form decides the scaling.
    """
    if not isinstance(net, ParallelReLU):
        raise TypeError(f"net must be a ParallelReLU, got {type(net).__name__}")
    program = solution.program
    expected = (program.in_features, program.m, program.depth, program.bias)
    actual = (net.in_features, net.hidden, net.depth, net.bias)
    if expected != actual:
        raise ValueError(
            f"solution is for (in_features, hidden, depth, bias) = {expected}, network has {actual}"
        )
    active = solution.active_patterns(rtol)
    count = int(active.sum())
    if count > net.branches:
        raise ValueError(
            f"the solution has {count} nonzero patterns but the network has only {net.branches} "
            "branches; keep the largest K patterns and solve again on those"
        )
    W1, w2, w3 = branch_weights(solution, net.regularization)
    idx = torch.nonzero(active).flatten()
    device, dtype = net.W1.device, net.W1.dtype
    newW1 = torch.zeros_like(net.W1)
    newW1[:count] = W1[idx].to(device=device, dtype=dtype)
    neww3 = torch.zeros_like(net.w3)
    neww3[:count] = w3[idx].to(device=device, dtype=dtype)
    net.W1.copy_(newW1)
    net.w3.copy_(neww3)
    if net.w2 is not None:
        neww2 = torch.zeros_like(net.w2)
        neww2[:count] = w2[idx].to(device=device, dtype=dtype)
        net.w2.copy_(neww2)
    return net
