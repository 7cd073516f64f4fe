"""Shared fixtures and an independent reference: the restricted program written directly in CVXPY
from the patterns (no code from lightning_convex.program), solved by Clarabel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

UCI_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "uci"


def reference_optimum(X, y, patterns, beta, bias=None):
    """OPT(S) of MATH.md section 3, written from scratch in CVXPY (independent of the library).

    ``bias`` defaults to ``patterns.bias`` (then a constant-1 column is appended to X). Clarabel
    runs at 1e-10, or 1e-8 where it cannot certify 1e-10; anything but "optimal" fails the test.
    """
    import cvxpy as cp

    X = np.asarray(X.detach().cpu() if hasattr(X, "detach") else X, dtype=np.float64)
    y = np.asarray(y.detach().cpu() if hasattr(y, "detach") else y, dtype=np.float64)
    if bias is None:
        bias = bool(patterns.bias)
    if bias:
        X = np.hstack([X, np.ones((X.shape[0], 1))])
    D1 = patterns.D1.cpu().numpy().astype(np.float64)
    D2 = None if patterns.D2 is None else patterns.D2.cpu().numpy().astype(np.float64)
    s = patterns.s.cpu().numpy().astype(np.float64)
    sig = patterns.sig.cpu().numpy().astype(np.float64)
    P, n, m = D1.shape
    qs = [[cp.Variable(X.shape[1]) for _ in range(m)] for _ in range(P)]
    pred = 0
    cons = []
    reg = 0
    for p in range(P):
        inner = 0
        for j in range(m):
            Xq = X @ qs[p][j]
            inner = inner + cp.multiply(D1[p, :, j], Xq)
            cons.append(cp.multiply(s[p, j] * (2 * D1[p, :, j] - 1), Xq) >= 0)
            reg = reg + cp.norm(qs[p][j], 2)
        if D2 is None:
            pred = pred + inner
        else:
            pred = pred + cp.multiply(D2[p], inner)
            cons.append(cp.multiply(sig[p] * (2 * D2[p] - 1), inner) >= 0)
    prob = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(pred - y) + beta * reg), cons)
    for tol in (1e-10, 1e-8):
        prob.solve(solver="CLARABEL", tol_gap_abs=tol, tol_gap_rel=tol, tol_feas=tol)
        if prob.status == "optimal":
            break
    assert prob.status == "optimal", prob.status
    return float(prob.value)


def numpy_forward(X, W1, w2, w3, bias=False):
    """f(X) of MATH.md section 1 in plain numpy (independent of lightning_convex.model)."""
    X = np.asarray(X, dtype=np.float64)
    if bias:
        X = np.hstack([X, np.ones((X.shape[0], 1))])
    out = np.zeros(X.shape[0])
    for k in range(W1.shape[0]):
        h = np.maximum(X @ W1[k], 0.0)
        if w2 is None:
            out += w3[k] * h[:, 0]
        else:
            out += w3[k] * np.maximum(h @ w2[k], 0.0)
    return out


def numpy_objective(X, y, W1, w2, w3, beta, regularization, bias=False):
    f = numpy_forward(X, W1, w2, w3, bias)
    loss = 0.5 * np.sum((f - np.asarray(y, dtype=np.float64)) ** 2)
    if regularization == "path":
        if w2 is None:
            R = sum(np.linalg.norm(W1[k, :, 0]) * abs(w3[k]) for k in range(W1.shape[0]))
        else:
            R = sum(np.linalg.norm(W1[k, :, j]) * abs(w2[k, j]) * abs(w3[k])
                    for k in range(W1.shape[0]) for j in range(W1.shape[2]))
    else:
        if w2 is None:
            R = 0.5 * (np.sum(W1 ** 2) + np.sum(w3 ** 2))
        else:
            R = 0.5 * (np.sum(w2 ** 2) + np.sum(w3 ** 2))
    return loss + beta * R


def params_of(net):
    W1 = net.W1.detach().double().numpy()
    w2 = None if net.w2 is None else net.w2.detach().double().numpy()
    return W1, w2, net.w3.detach().double().numpy()


@pytest.fixture
def uci_dir():
    if not UCI_DIR.is_dir():
        pytest.skip("../shared/data/uci not present")
    return UCI_DIR
