"""benchmarks/solvers.py compares pyscnn on the same pattern SET (issue 16), tested on a fake
pyscnn answer (pyscnn itself is not a dependency): pyscnn keeps each distinct nonzero pattern
once, in np.unique's order, so its returned gates differ from the ones passed in."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

import lightning_convex as lc

from conftest import reference_optimum

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import solvers as bench  # noqa: E402


def two_sided_program(seed=3, n=40, d=3, gates=6):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.relu(X[:, 0]) - X[:, 1] + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
    G = torch.randn(d + 1, gates, generator=g, dtype=torch.float64)
    G = torch.cat([G, G[:, :2], torch.tensor([0.0] * d + [-1.0], dtype=torch.float64)[:, None]], 1)
    Xb = torch.cat([X, torch.ones(n, 1, dtype=X.dtype)], 1)
    D = (Xb @ G >= 0).T  # duplicates (the repeated gates) and the all-zero pattern (the last gate)
    sig = torch.cat([torch.ones(D.shape[0], dtype=torch.int8), -torch.ones(D.shape[0], dtype=torch.int8)])
    pats = lc.PatternSet(torch.cat([D, D])[:, :, None], None, sig[:, None].clone(), sig, True)
    return lc.RestrictedProgram(X, y, pats, 0.1), X, y, G.numpy()


def fake_pyscnn(prog, G, Q):
    """What pyscnn would return for the optimum Q: np.unique's gates (d', b), U and V (b, d')."""
    Xb = prog.features.numpy()
    XG = (Xb @ G > 0).astype(float)
    D, index = np.unique(XG, axis=1, return_index=True)
    keep = D.any(axis=0)
    gates = G[:, index[keep]]
    K = G.shape[1]
    Dp = prog.patterns.D1[:K, :, 0].numpy().astype(bool)
    U = np.zeros((gates.shape[1], prog.d))
    V = np.zeros_like(U)
    for i, col in enumerate((Xb @ gates > 0).T):
        same = [k for k in range(K) if np.array_equal(Dp[k], col)]
        U[i] = Q[same, 0].sum(axis=0)
        V[i] = -Q[[K + k for k in same], 0].sum(axis=0)
    return gates, U, V


def test_same_pattern_set_maps_to_the_optimum():
    prog, X, y, G = two_sided_program()
    assert prog.patterns.unique_index().__len__() < prog.P  # duplicates present
    opt = reference_optimum(X, y, prog.patterns, prog.beta)
    sol = lc.solve(prog, solver="clarabel", tol=1e-10)
    gates, U, V = fake_pyscnn(prog, G, sol.Q.numpy())
    assert gates.shape[1] < G.shape[1]  # pyscnn's gates are not the ones passed in
    Q = bench.pyscnn_variable(prog, gates, U, V)
    assert not isinstance(Q, str), Q
    Q = torch.as_tensor(Q)
    assert prog.constraint_violation(Q) <= 1e-9
    assert abs(prog.objective(Q) - opt) <= 1e-7 * opt


def test_different_pattern_sets_are_reported():
    prog, X, y, G = two_sided_program()
    other = G.copy()
    other[:, 0] = -other[:, 0]  # a pattern our program does not hold
    gates, U, V = fake_pyscnn(prog, other, np.zeros(prog.shape))
    out = bench.pyscnn_variable(prog, gates, U, V)
    assert isinstance(out, str) and "differ" in out
