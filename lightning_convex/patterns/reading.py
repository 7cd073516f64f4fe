"""Reading activation patterns off branch weights (MATH.md section 2).

For branch k: D1_k = 1[X W1_k >= 0] (n x m), z_k = relu(X W1_k) w2_k, D2_k = 1[z_k >= 0] (n),
sig_k = sign(w3_k), s_kj = sig_k * sign(w2_kj), with sign(0) = +1. Patterns are read in float64
so that a network is feasible, to rounding, for its own patterns in the float64 restricted
program; rows are processed in chunks so that n = 60000 fits. The same pass can return the
branch outputs w3_k relu(z_k), which certificates need alongside the patterns.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch

from ..model import ParallelReLU, float64_parameters, network_rows
from ..rows import ROW_CHUNK
from .set import PatternSet


def sign_of(t: torch.Tensor) -> torch.Tensor:
    """sign with sign(0) = +1, as int8."""
    return torch.where(t >= 0, 1, -1).to(torch.int8)


@torch.no_grad()
def read_branches(features: torch.Tensor, W1: torch.Tensor, w2: Optional[torch.Tensor], w3: torch.Tensor,
                  bias: bool, outputs: bool = False, chunk_size: int = ROW_CHUNK
                  ) -> Union[PatternSet, Tuple[PatternSet, torch.Tensor]]:
    """The patterns of raw branch weights W1 (K, d', m), w2 (K, m) or None, w3 (K,) on ``features``
    (n, d'), pattern k for branch k (duplicates kept); with ``outputs`` also the per-branch
    outputs w3_k relu(relu(X W1_k) w2_k), shape (K, n)."""
    D1_parts, D2_parts, out_parts = [], [], []
    for start in range(0, features.shape[0], chunk_size):
        pre = torch.einsum("nd,kdm->knm", features[start : start + chunk_size], W1)
        D1_parts.append(pre >= 0)
        if w2 is None:
            if outputs:
                out_parts.append(w3[:, None] * torch.relu(pre[:, :, 0]))
        else:
            z = torch.einsum("knm,km->kn", torch.relu(pre), w2)
            D2_parts.append(z >= 0)
            if outputs:
                out_parts.append(w3[:, None] * torch.relu(z))
    D1 = torch.cat(D1_parts, dim=1)
    D2 = torch.cat(D2_parts, dim=1) if w2 is not None else None
    sig = sign_of(w3)
    s = sig[:, None] * (sign_of(w2) if w2 is not None else torch.ones_like(sig)[:, None])
    patterns = PatternSet(D1, D2, s.to(torch.int8), sig, bias)
    if outputs:
        return patterns, torch.cat(out_parts, dim=1)
    return patterns


@torch.no_grad()
def patterns_of(net: ParallelReLU, X, chunk_size: int = ROW_CHUNK) -> PatternSet:
    """The K patterns of ``net`` on X (one per branch, duplicates kept), on the net's device.

    Branch k's pattern is pattern k of the result, so ``patterns_of(net, X).select([k])`` is the
    cone branch k lies in. Computed in float64, in row chunks. X is raw (n, d) data or a
    :class:`~lightning_convex.rows.Rows`.
    """
    rows = network_rows(net, X)
    W1, w2, w3 = float64_parameters(net)
    return read_branches(rows.features, W1, w2, w3, net.bias, chunk_size=chunk_size)
