"""The training objective in the paper's sum form (MATH.md section 1), in float64."""

from __future__ import annotations

import torch

from ._checks import check_beta
from .model import ParallelReLU, branch_outputs, float64_parameters, network_rows, objective_on_rows
from .rows import ROW_CHUNK


@torch.no_grad()
def predict(net: ParallelReLU, X, chunk_size: int = ROW_CHUNK) -> torch.Tensor:
    """f(X) in float64 on the network's device, evaluated in row chunks (X raw or :class:`Rows`)."""
    features = network_rows(net, X).features
    W1, w2, w3 = float64_parameters(net)
    out = [branch_outputs(features[start : start + chunk_size], W1, w2, w3).sum(dim=0)
           for start in range(0, features.shape[0], chunk_size)]
    return torch.cat(out)


@torch.no_grad()
def objective(net: ParallelReLU, X, y=None, beta=None) -> float:
    """J(theta) = 1/2 ||f(X) - y||^2 + beta * R(theta), in float64.

    R is the network's own regularizer (path norm or the paper's eq. 4 form). This is the sum
    form of MATH.md section 1; divide by n for a per-sample loss. ``X`` may be a :class:`Rows`
    holding the targets (then ``y`` may be omitted).
    """
    beta = check_beta(beta)
    rows = network_rows(net, X, y)
    if rows.y is None:
        raise ValueError("objective needs the targets y")
    return objective_on_rows(net, rows, beta)
