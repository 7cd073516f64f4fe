"""The search for strict descent directions outside the pattern set (MATH.md section 6).

The network is a global optimum only if no branch theta' of unit path norm has r . f_theta'(X) >
beta, r the network's residual; such a branch is a strict descent direction, and its pattern
is one a solver should add. :func:`search_violations` looks for one by gradient ascent on the
ratio from many starts at once; :func:`search_outside` runs it for a network and reads the
patterns of the violating branches.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from ..patterns import PatternSet, draw_branches, read_branches
from ..rows import ROW_CHUNK, RowSync


def _branch_value(Xf, U, w2):
    """h = relu(relu(X U) w2) for candidates U (C, d', m), w2 (C, m); depth 2 (w2 None): relu(X u)."""
    pre = torch.einsum("nd,cdm->cnm", Xf, U)
    if w2 is None:
        return torch.relu(pre[:, :, 0])
    return torch.relu(torch.einsum("cnm,cm->cn", torch.relu(pre), w2))


def _normalise(U, w2):
    """Unit columns U_j and sum_j |w2_j| = 1 (depth 2: unit u): the ratio below is unchanged."""
    norms = U.norm(dim=1).clamp_min(1e-300)  # (C, m)
    U = U / norms[:, None, :]
    if w2 is None:
        return U, None
    w2 = w2 * norms
    w2 = w2 / w2.abs().sum(dim=1, keepdim=True).clamp_min(1e-300)
    return U, w2


def _numerator_and_grad(Xf, r, U, w2, sync: RowSync):
    """N = r . h(U, w2) (C,) and its gradients, summed over row chunks and processes."""
    with torch.enable_grad():
        Ur = U.detach().requires_grad_(True)
        wr = None if w2 is None else w2.detach().requires_grad_(True)
        N = torch.zeros(U.shape[0], dtype=U.dtype, device=U.device)
        gU = torch.zeros_like(U)
        gw = None if w2 is None else torch.zeros_like(w2)
        for start in range(0, Xf.shape[0], ROW_CHUNK):
            rows = slice(start, start + ROW_CHUNK)
            val = _branch_value(Xf[rows], Ur, wr) @ r[rows]
            grads = torch.autograd.grad(val.sum(), [Ur] + ([wr] if wr is not None else []))
            N += val.detach()
            gU += grads[0]
            if gw is not None:
                gw += grads[1]
    N = sync.sum(N)
    gU = sync.sum(gU)
    gw = None if gw is None else sync.sum(gw)
    return N, gU, gw


def _path_norm_grad(U, w2):
    """The gradient of R_path(U, w2) = sum_j ||U_j|| |w2_j| (depth 2: ||u||) per candidate."""
    with torch.enable_grad():
        Ur = U.detach().requires_grad_(True)
        wr = None if w2 is None else w2.detach().requires_grad_(True)
        R = Ur.norm(dim=1)
        R = (R * wr.abs()).sum(dim=1) if wr is not None else R[:, 0]
        return torch.autograd.grad(R.sum(), [Ur] + ([wr] if wr is not None else []))


def search_violations(Xf: torch.Tensor, r: torch.Tensor, beta: float, depth: int, hidden: int,
                      count: int, steps: int = 100, lr: float = 0.05, generator=None,
                      starts=None, sync: Optional[RowSync] = None):
    """Batched search for unit-path-norm branches theta' with r . f_theta'(X) > beta (section 6).

    ``count`` Gaussian starts (plus the optional ``starts`` = (U, w2) of the network's branches)
    climb rho(theta') = sigma r . h_theta'(X) / R_path(theta') by Adam, sigma = +-1 the output
    sign fixed at the start. Sums over rows go through ``sync``. Returns
    (rho_best (C,), U (C, d', m), w2 (C, m) or None, sigma (C,)) at each candidate's best point,
    U with unit columns and sum |w2| = 1, so (U, w2, sigma) has unit path norm.
    """
    sync = sync or RowSync()
    dtype, device = Xf.dtype, Xf.device
    U, w2, _ = draw_branches(count, Xf.shape[1], hidden, depth, generator, device, dtype=dtype,
                             output_weights=False)
    if starts is not None:
        U = torch.cat([U, starts[0].to(device=device, dtype=dtype)])
        if w2 is not None:
            w2 = torch.cat([w2, starts[1].to(device=device, dtype=dtype)])
    U, w2 = _normalise(U, w2)

    N, _, _ = _numerator_and_grad(Xf, r, U, w2, sync)
    sigma = torch.where(N >= 0, 1.0, -1.0).to(dtype)
    best = torch.full_like(N, -float("inf"))
    bestU, bestw = U.clone(), None if w2 is None else w2.clone()
    # Adam climbs from the normalised point of each step: the parameters are reset to it below,
    # while the optimizer's moments carry over
    params = [U.clone()] + ([w2.clone()] if w2 is not None else [])
    optimizer = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-12, maximize=True)
    for step in range(steps + 1):
        U, w2 = _normalise(params[0], params[1] if len(params) > 1 else None)
        N, gU, gw = _numerator_and_grad(Xf, r, U, w2, sync)
        # after normalisation R_path = 1 and rho = sigma N; the gradient of N / R at R = 1 is
        # grad N - N grad R
        rho = sigma * N
        better = rho > best
        best = torch.where(better, rho, best)
        bestU = torch.where(better[:, None, None], U, bestU)
        if w2 is not None:
            bestw = torch.where(better[:, None], w2, bestw)
        if step == steps:
            break
        gR = _path_norm_grad(U, w2)
        with torch.no_grad():
            params[0].copy_(U)
            params[0].grad = sigma[:, None, None] * (gU - N[:, None, None] * gR[0])
            if w2 is not None:
                params[1].copy_(w2)
                params[1].grad = sigma[:, None] * (gw - N[:, None] * gR[1])
        optimizer.step()
    return best, bestU, bestw, sigma


class Violations(NamedTuple):
    """What :func:`search_outside` found.

    Attributes:
        max_violation: the largest r . f_theta'(X) / beta over the unit-path-norm branches found.
        patterns: the patterns of the branches with a violation > 1, most violating first, or None.
        weights: (W1 (V, d', m), w2 (V, m) or None, w3 (V,)) of those branches, or None.
    """

    max_violation: float
    patterns: Optional[PatternSet]
    weights: Optional[tuple]


def search_outside(Xf, r, beta: float, depth: int, hidden: int, bias: bool, count: int, steps: int,
                   generator=None, W1=None, w2=None, path=None, sync: Optional[RowSync] = None) -> Violations:
    """Search for branches violating the dual constraint at the network's residual ``r``.

    The residual of the network itself (not a rescaled dual point): a violation is then a strict
    descent direction for the network. The network's own live branches (W1, w2 with path norm
    ``path`` > 0) are extra starts.
    """
    starts = None
    if path is not None and path.numel() and bool((path > 0).any()):
        live = path > 0
        starts = (W1[live], w2[live] if w2 is not None else None)
    rho, U, wv, sigma = search_violations(Xf, r, beta, depth, hidden, count, steps=steps, generator=generator,
                                          starts=starts, sync=sync)
    max_violation = float(rho.max()) / beta
    hit = torch.nonzero(rho > beta).flatten()
    hit = hit[torch.argsort(rho[hit], descending=True)]
    if not hit.numel():
        return Violations(max_violation, None, None)
    weights = (U[hit], None if wv is None else wv[hit], sigma[hit])
    return Violations(max_violation, read_branches(Xf, *weights, bias), weights)
