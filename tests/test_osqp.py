"""The OSQP backend against independent references (Clarabel, CVXPY)."""

import numpy as np
import pytest
import torch

from lightning_convex import ParallelReLU, RestrictedProgram, SolveStatus, patterns_of, solve


def _program(n=30, d=3, K=4, m=3, depth=3, bias=True, beta=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.relu(X[:, 0]) - X[:, 1] + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
    torch.manual_seed(seed)
    net = ParallelReLU(d, m if depth == 3 else 1, K, depth=depth, bias=bias).double()
    return RestrictedProgram(X, y, patterns_of(net, X), beta), net


def test_tiny_matches_clarabel():
    prog, _ = _program()
    ref = solve(prog, solver="clarabel")
    sol = solve(prog, solver="osqp")
    assert sol.status == SolveStatus.OPTIMAL
    assert abs(sol.objective - ref.objective) <= 1e-6 * ref.objective
