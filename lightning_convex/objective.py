"""The training objective in the paper's sum form (MATH.md section 1), in float64."""

from __future__ import annotations

import torch

from ._checks import as_targets, check_beta
from .model import ParallelReLU, add_bias_column, branch_outputs, float64_parameters, float64_rows, regularizer

#: Rows per chunk when evaluating f(X): bounds the (K, rows, m) intermediate.
ROW_CHUNK = 8192


@torch.no_grad()
def predict(net: ParallelReLU, X, chunk_size: int = ROW_CHUNK) -> torch.Tensor:
    """f(X) in float64 on the network's device, evaluated in row chunks."""
    X = float64_rows(net, X)
    W1, w2, w3 = float64_parameters(net)
    out = []
    for start in range(0, X.shape[0], chunk_size):
        Xc = X[start : start + chunk_size]
        Xf = add_bias_column(Xc) if net.bias else Xc
        out.append(branch_outputs(Xf, W1, w2, w3).sum(dim=0))
    return torch.cat(out)


@torch.no_grad()
def objective(net: ParallelReLU, X, y, beta) -> float:
    """J(theta) = 1/2 ||f(X) - y||^2 + beta * R(theta), in float64.

    R is the network's own regularizer (path norm or the paper's eq. 4 form). This is the sum
    form of MATH.md section 1; divide by n for a per-sample loss.
    """
    beta = check_beta(beta)
    f = predict(net, X)
    y = as_targets(y, f.shape[0], device=f.device, dtype=torch.float64)
    W1, w2, w3 = float64_parameters(net)
    R = regularizer(W1, w2, w3, net.regularization)
    return float(0.5 * (f - y).square().sum() + beta * R)
