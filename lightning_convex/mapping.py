"""Network weights <-> the convex variable, both ways, as tensor formulas (MATH.md sections 2 and 4).

Network -> Q (section 2): branch k's convex variable is q_kj = w3_k w2_kj W1_k[:, j] (depth 2:
q_k = w3_k u_k), and its path norm is sum_j ||q_kj||. Branches are placed into a pattern set by
:func:`scatter_to_patterns` (branches sharing a pattern add up, which stays in the cone and
never increases sum ||q_pj||).

Q -> network (section 4, Proposition 1): for a pattern with Q_p = [q_p1 .. q_pm],
rho_j = ||q_pj||, t = sum_j rho_j > 0, one branch::

    W1[:, j] = s_j q_pj / sqrt(rho_j t)   (0 where rho_j = 0)
    w2[j]    = s_j sig sqrt(rho_j / t)
    w3       = sig t
    paper form: w2 *= sqrt(t), w3 /= sqrt(t)   (then ||W1||_F = 1 and ||w2|| = |w3| = sqrt(t))

Depth 2 (m = 1, s = sig): u = s q / sqrt(rho), w3 = sig sqrt(rho), the same in both forms. The
branch reproduces D2_p * sum_j D1_pj X q_pj exactly whenever Q_p lies in its cone, and its
regularizer equals t, so a rebuilt network's J equals the convex objective.

Nothing here knows networks, programs or solutions: those layers call these formulas.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from ._checks import check_regularization


def branch_variables(W1: torch.Tensor, w2: Optional[torch.Tensor], w3: torch.Tensor) -> torch.Tensor:
    """q_kj = w3_k w2_kj W1_k[:, j] for raw weights W1 (K, d', m), w2 (K, m) or None, w3 (K,):
    shape (K, m, d')."""
    coef = w3[:, None] if w2 is None else w3[:, None] * w2
    return coef[:, :, None] * W1.transpose(1, 2)


def branch_path_norms(W1: torch.Tensor, w2: Optional[torch.Tensor], w3: torch.Tensor) -> torch.Tensor:
    """sum_j ||q_kj|| per branch (K,): the path norm each branch contributes to R."""
    cols = W1.norm(dim=1)  # (K, m)
    if w2 is not None:
        cols = cols * w2.abs()
    return cols.sum(dim=1) * w3.abs()


def scatter_to_patterns(q: torch.Tensor, index: torch.Tensor, num_patterns: int) -> torch.Tensor:
    """Q (P, m, d') with branch k's q added to pattern ``index[k]``; branches with index < 0
    (their pattern is not in the set) are left out."""
    index = torch.as_tensor(index, dtype=torch.long, device=q.device)
    keep = index >= 0
    Q = torch.zeros((num_patterns,) + tuple(q.shape[1:]), dtype=q.dtype, device=q.device)
    Q.index_add_(0, index[keep], q[keep])
    return Q


def rebuild_branches(Q: torch.Tensor, s: torch.Tensor, sig: torch.Tensor, depth: int,
                   regularization: str = "path") -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
    """Proposition 1 for every pattern: (W1 (P, d', m), w2 (P, m) or None, w3 (P,)) from Q (P, m, d')
    with cone signs s (P, m) and output signs sig (P,), in Q's dtype. Zero patterns give zero branches."""
    check_regularization(regularization)
    s = s.to(Q)
    sig = sig.to(Q)
    rho = Q.norm(dim=2)  # (P, m)
    t = rho.sum(dim=1)  # (P,)
    if depth == 2:
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
