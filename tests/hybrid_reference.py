"""The tests' independent reference, written from MATH.md alone: the network's forward pass and
objective J in numpy float64 (section 1), its patterns (section 2), and the restricted program
(section 3) as a CVXPY model solved by Clarabel.

Nothing here imports lightning_convex (a PatternSet or network is only read through its tensor
attributes), so the tests compare the library against something it did not produce.
tests/conftest.py serves the same functions to the other test modules.
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np

#: Clarabel's tolerances, tightest first: a solve that cannot certify one is retried at the next.
TOLERANCES = (1e-10, 1e-8)


def as_numpy(t):
    return t.detach().cpu().double().numpy() if hasattr(t, "detach") else np.asarray(t, dtype=np.float64)


def parameters(net):
    """(W1 (K, d', m), w2 (K, m) or None, w3 (K,), bias, regularization) as float64 numpy."""
    w2 = None if net.w2 is None else as_numpy(net.w2)
    return as_numpy(net.W1), w2, as_numpy(net.w3), bool(net.bias), net.regularization


def features(X, bias):
    X = as_numpy(X)
    return np.hstack([X, np.ones((X.shape[0], 1))]) if bias else X


def forward(X, W1, w2, w3, bias=False):
    """f(X) = sum_k w3_k relu(relu(X W1_k) w2_k) (depth 3) or sum_k w3_k relu(X W1_k) (depth 2)."""
    pre = np.einsum("nd,kdm->knm", features(X, bias), W1)
    if w2 is None:
        return (w3[:, None] * np.maximum(pre[:, :, 0], 0)).sum(0)
    return (w3[:, None] * np.maximum(np.einsum("knm,km->kn", np.maximum(pre, 0), w2), 0)).sum(0)


def regularizer(W1, w2, w3, regularization):
    """R: the path norm, or the paper's eq. 4 form (1/2 the squared norms of the layers after W1;
    for depth 2, of W1 and w3)."""
    cols = np.linalg.norm(W1, axis=1)  # (K, m)
    if regularization == "path":
        return (cols * np.abs(w3)[:, None] * (1.0 if w2 is None else np.abs(w2))).sum()
    if w2 is None:
        return 0.5 * (np.square(cols[:, 0]).sum() + np.square(w3).sum())
    return 0.5 * (np.square(w2).sum() + np.square(w3).sum())


def objective(X, y, W1, w2, w3, beta, regularization, bias=False):
    """J = 1/2 ||f(X) - y||^2 + beta R (the sum form)."""
    f = forward(X, W1, w2, w3, bias)
    return 0.5 * np.square(f - as_numpy(y)).sum() + beta * regularizer(W1, w2, w3, regularization)


def network_objective(net, X, y, beta):
    """(J, f(X)) of a network, float64."""
    W1, w2, w3, bias, reg = parameters(net)
    f = forward(X, W1, w2, w3, bias)
    return 0.5 * np.square(f - as_numpy(y)).sum() + beta * regularizer(W1, w2, w3, reg), f


def read_patterns(net, X):
    """The network's distinct patterns (D1 (P, n, m), D2 (P, n) or None, s (P, m), sig (P,)),
    with sign(0) = +1 (MATH.md section 2), patterns with an empty prediction mask dropped."""
    W1, w2, w3, bias, _ = parameters(net)
    Xf = features(X, bias)
    pre = np.einsum("nd,kdm->knm", Xf, W1)
    D1 = pre >= 0
    sig = np.where(w3 >= 0, 1, -1)
    if w2 is None:
        D2 = None
        s = sig[:, None].copy()
        mask = D1
    else:
        D2 = np.einsum("knm,km->kn", np.maximum(pre, 0), w2) >= 0
        s = sig[:, None] * np.where(w2 >= 0, 1, -1)
        mask = D1 & D2[:, :, None]
    seen, keep = set(), []
    for k in range(W1.shape[0]):
        if not mask[k].any():
            continue
        key = (D1[k].tobytes(), None if D2 is None else D2[k].tobytes(), s[k].tobytes(), int(sig[k]))
        if key not in seen:
            seen.add(key)
            keep.append(k)
    return D1[keep], None if D2 is None else D2[keep], s[keep], sig[keep]


def pattern_arrays(patterns):
    """A lightning_convex PatternSet as numpy arrays (D1, D2, s, sig)."""
    D2 = None if patterns.D2 is None else patterns.D2.cpu().numpy()
    return (patterns.D1.cpu().numpy(), D2, patterns.s.cpu().numpy().astype(int),
            patterns.sig.cpu().numpy().astype(int))


def restricted_optimum(X, y, beta, D1, D2, s, sig, bias):
    """(OPT, optimal prediction f*) of the restricted program of MATH.md section 3, via CVXPY.

    Clarabel runs at each of :data:`TOLERANCES` until it reports "optimal"; anything else
    ("optimal_inaccurate" included) fails the test, so a reference is never a guess.
    """
    Xf = features(X, bias)
    y = as_numpy(y)
    P, n, m = D1.shape
    d = Xf.shape[1]
    q = cp.Variable((P * m, d))
    pred = 0
    cons = []
    for p in range(P):
        inner = 0
        for j in range(m):
            z = Xf @ q[p * m + j]
            inner = inner + cp.multiply(D1[p, :, j].astype(float), z)
            cons.append(cp.multiply(s[p, j] * (2.0 * D1[p, :, j] - 1.0), z) >= 0)
        if D2 is None:
            pred = pred + inner
        else:
            pred = pred + cp.multiply(D2[p].astype(float), inner)
            cons.append(cp.multiply(sig[p] * (2.0 * D2[p] - 1.0), inner) >= 0)
    cost = 0.5 * cp.sum_squares(pred - y) + beta * cp.sum(cp.norm(q, 2, axis=1))
    problem = cp.Problem(cp.Minimize(cost), cons)
    for tol in TOLERANCES:
        problem.solve(solver="CLARABEL", tol_gap_abs=tol, tol_gap_rel=tol, tol_feas=tol)
        if problem.status == "optimal":
            break
    if problem.status != "optimal":
        raise AssertionError(f"reference solve not optimal: {problem.status}")
    return float(problem.value), np.asarray(pred.value, dtype=np.float64)


def own_optimum(net, X, y, beta):
    """(J(theta), OPT over theta's own patterns, f(theta), f*): the fixed-point check."""
    J, f = network_objective(net, X, y, beta)
    D1, D2, s, sig = read_patterns(net, X)
    opt, fstar = restricted_optimum(X, y, beta, D1, D2, s, sig, net.bias)
    return J, opt, f, fstar
