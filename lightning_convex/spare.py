"""Spare branches of a network: the exactly-zero ones, and re-seeding them (policy ``spare="reseed"``
of :func:`~lightning_convex.active_set_solve`; the reasoning is in :mod:`lightning_convex.active_set`).
"""

from __future__ import annotations

import math

import torch

from ._checks import check_beta
from .mapping import branch_path_norms, branch_variables, rebuild_branches
from .model import ParallelReLU, branch_outputs, network_rows
from .objective import predict
from .patterns import draw_branches


def spare_branches(net: ParallelReLU) -> torch.Tensor:
    """bool (K,): branches whose parameters are all exactly zero (they never revive under SGD)."""
    zero = (net.W1.detach() == 0).flatten(1).all(dim=1) & (net.w3.detach() == 0)
    if net.w2 is not None:
        zero &= (net.w2.detach() == 0).all(dim=1)
    return zero


@torch.no_grad()
def reseed_spare_(net: ParallelReLU, X, y, beta, budget: float, generator=None,
                  candidates: int = 64) -> int:
    """Re-seed the network's exactly-zero branches from random branches (see the module notes).

    Each spare branch in turn gets, among ``candidates`` Gaussian branches, the one with the
    largest |r . g| (r the current residual, g the branch output at unit path norm, its sign
    chosen so that r . g >= 0), at the path norm t that minimises the exact change
    t (beta - r.g) + t^2 ||g||^2 / 2 when r.g > beta, else the t that spends an equal share of
    ``budget`` (>= 0, in J units). Returns the number of branches written. J rises by at most
    ``budget`` in exact arithmetic; the caller checks the stored network.
    """
    spare = torch.nonzero(spare_branches(net)).flatten().tolist()
    if not spare or candidates < 1:
        return 0
    beta = check_beta(beta)
    rows = network_rows(net, X, y)
    r = rows.y - predict(net, rows)
    W1, w2, _ = draw_branches(candidates, net.feature_dim, net.hidden, net.depth, generator, rows.device,
                              output_weights=False)
    ones = torch.ones(candidates, dtype=torch.float64, device=rows.device)
    out = branch_outputs(rows.features, W1, w2, ones)
    # q_cj = w2_cj W1_c[:, j] (w3 = +1): path norm T_c = sum_j ||q_cj||, unit-path-norm output g_c
    q = branch_variables(W1, w2, ones)  # (C, m, d')
    T = branch_path_norms(W1, w2, ones)
    usable = (T > 0) & (out.abs().sum(dim=1) > 0)
    g = out / torch.where(T > 0, T, torch.ones_like(T))[:, None]
    written = 0
    remaining = float(max(budget, 0.0))
    for position, k in enumerate(spare):
        corr = g @ r
        score = torch.where(usable, corr.abs(), torch.full_like(corr, -1.0))
        best = int(torch.argmax(score))
        if float(score[best]) < 0:
            break
        c = float(score[best])
        sig = 1.0 if float(corr[best]) >= 0 else -1.0
        gg = float(g[best].square().sum())
        if c > beta:
            t = (c - beta) / gg
        else:
            share = remaining / (len(spare) - position)
            if share <= 0:
                usable[best] = False
                continue
            a = beta - c
            t = 2.0 * share / (a + math.sqrt(a * a + 2.0 * gg * share))  # root of a t + gg t^2/2 = share
            remaining -= a * t + 0.5 * gg * t * t
        # q_j = w3 w2_j W1_j with w3 = sig t / T; cone signs s_j = sig sign(w2_j) (sign(0) = +1)
        Qk = (sig * t / float(T[best])) * q[best]
        s = sig * (torch.where(w2[best] >= 0, 1.0, -1.0).to(Qk) if w2 is not None else Qk.new_ones(1))
        net.write_branches_([k], *rebuild_branches(Qk[None], s[None], Qk.new_tensor([sig]), net.depth,
                                                   net.regularization))
        r = r - sig * t * g[best]
        usable[best] = False
        written += 1
    return written
