"""The network's side of a certificate: one pass over the rows, and the pattern set S it is
certified against (MATH.md sections 2, 3 and 8)."""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from ..mapping import branch_path_norms
from ..model import ParallelReLU, float64_parameters, regularizer
from ..patterns import PatternSet, concatenate, read_branches, sample_patterns
from ..rows import Rows, RowSync
from .membership import branch_membership, check_membership


class NetworkPass(NamedTuple):
    """One pass of the network over the rows: J, the residual and the branch statistics."""

    W1: torch.Tensor
    w2: Optional[torch.Tensor]
    w3: torch.Tensor
    own: PatternSet  # the network's active set on these rows
    outputs: torch.Tensor  # (K, n_local) branch outputs f_k(X)
    residual: torch.Tensor  # y - f(X), (n_local,)
    n_total: int
    primal: float
    path: torch.Tensor  # R_k, (K,)
    Fy: torch.Tensor  # f_k . y over all rows, (K,)
    gram: torch.Tensor  # f_k . f_l over all rows, (K, K)


def network_pass(net: ParallelReLU, rows: Rows, beta: float, sync: RowSync) -> NetworkPass:
    """The network's outputs, patterns, J (float64) and branch sums over every process's rows."""
    W1, w2, w3 = float64_parameters(net)
    Xf, y = rows.features, rows.y
    own, outputs = read_branches(Xf, W1, w2, w3, net.bias, outputs=True)
    K = outputs.shape[0]
    residual = y - outputs.sum(dim=0)
    count = torch.tensor(float(Xf.shape[0]), dtype=Xf.dtype, device=Xf.device)
    stats = sync.sum(torch.cat([
        torch.stack([residual.square().sum(), count]),
        outputs @ y,
        (outputs @ outputs.T).reshape(-1),
    ]))
    primal = 0.5 * float(stats[0]) + beta * float(regularizer(W1, w2, w3, net.regularization))
    return NetworkPass(W1, w2, w3, own, outputs, residual, int(round(float(stats[1]))), primal,
                       branch_path_norms(W1, w2, w3), stats[2 : 2 + K], stats[2 + K :].reshape(K, K))


def pattern_set(net: ParallelReLU, rows: Rows, network: NetworkPass, patterns, extra_patterns: int,
                generator, exhaustive: bool, strict: bool, membership_tol: float, sync: RowSync):
    """(S, scope, contains (K,) bool: which branches lie in a cone of S, where (K,): the index in
    S of a pattern each branch lies in, -1 for none).

    S is the network's own active set (``patterns`` None) or the given set, checked to contain
    the network (:mod:`.membership`), plus ``extra_patterns`` sampled ones (Remark 3).
    """
    device = rows.device
    contains = torch.ones(net.branches, dtype=torch.bool, device=device)
    where = torch.arange(net.branches, device=device)  # the active set: branch k in pattern k
    if patterns is None:
        S, scope = network.own, "active set"
    else:
        if not isinstance(patterns, PatternSet):
            raise TypeError(f"patterns must be a PatternSet, got {type(patterns).__name__}")
        expected = (rows.n, net.hidden, net.depth, net.bias)
        actual = (patterns.n, patterns.hidden, patterns.depth, patterns.bias)
        if expected != actual:
            raise ValueError(
                f"patterns are for (n, m, depth, bias) = {actual}, but X and the network give {expected}"
            )
        if len(patterns) == 0:
            raise ValueError("the pattern set is empty")
        S, scope = patterns.to(device), "given set"
        contains, where = branch_membership(rows.features, network.W1, network.w2, network.w3,
                                            network.outputs, rows.y.abs().max(), S, sync, membership_tol,
                                            index=True)
        check_membership(contains, membership_tol, strict)
    if extra_patterns:
        sampled = sample_patterns(rows, extra_patterns, net.hidden, generator=generator, depth=net.depth,
                                  bias=net.bias, sync=sync)
        S = concatenate([S, sampled])
        scope = f"{scope} + {len(sampled)} sampled"
    if exhaustive:
        scope = "global"
    return S, scope, contains, where
