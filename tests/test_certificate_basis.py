"""The engine state a callback's certificates carry: the row basis built in pieces under a
clock, the certificates given while it is being built, the rows no pattern reaches, and the
carried iterate against a cold start.

References are independent of the code under test: the singular values from LAPACK's SVD
(torch.linalg.svdvals), the data matrix itself (X = U Sigma V^T), and OPT(S) from the explicit
CVXPY model of MATH.md section 3 (tests/hybrid_reference.py).
"""

import math
import time

import pytest
import torch

import lightning_convex as lc
import lightning_convex.engine.basis_build as basis_build
from lightning_convex.engine.basis_build import BasisBuild

from conftest import reference_optimum
from test_certificate_methods import solver_tol, trained


def test_a_basis_built_one_piece_per_call_is_the_decomposition_of_the_rows(monkeypatch):
    monkeypatch.setattr(basis_build, "PIECE_ROWS", 64)
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(500, 12, generator=gen, dtype=torch.float64) * torch.logspace(0, 3, 12, dtype=torch.float64)
    build = BasisBuild(X, torch.float64)
    calls = 0
    while build.advance(time.perf_counter()) is None:  # a deadline already passed: one piece per call
        calls += 1
    pieces = math.ceil(500 / 64)
    assert calls + 1 == 2 * pieces + 1  # Gram pieces, the eigendecomposition, pieces of U
    V, sigma, U = build.basis
    assert torch.allclose(sigma, torch.linalg.svdvals(X), rtol=1e-10)
    assert torch.allclose((U * sigma) @ V.T, X, atol=1e-9 * float(X.abs().max()))
    assert torch.allclose(U.T @ U, torch.eye(12, dtype=torch.float64), atol=1e-10)


def test_certificates_stay_valid_while_the_basis_is_built_and_after(monkeypatch):
    monkeypatch.setattr(basis_build, "PIECE_ROWS", 8)
    beta = 0.1
    X, y, net = trained(1, steps=300, beta=beta)
    opt = reference_optimum(X, y, lc.patterns_of(net, X), beta)
    previous, stages = None, []
    for _ in range(30):  # budgets far too short for the whole basis: the build is carried
        cert = lc.certify(net, X, y, beta, method="engine", time_limit=1e-4, warm_start=previous)
        previous = cert
        assert 0 < cert.lower_bound <= opt + solver_tol(opt)
        assert cert.info["iterations"] == 0
        stages.append(cert.info["basis"])
        if stages[-1] == "done":
            break
    assert stages[0] == "gram" and "project" in stages and stages[-1] == "done"
    # the next call has the basis and time: the ADMM starts from the network
    cert = lc.certify(net, X, y, beta, method="engine", time_limit=5.0, max_iter=20, warm_start=previous)
    assert cert.info["start"] == "network" and cert.info["iterations"] >= 1
    assert cert.lower_bound <= opt + solver_tol(opt)
    assert cert.state.build is None and cert.state.basis is not None


def half_plane_network(seed, n=60, K=3, m=2):
    """Data in d = 2 and a network whose every neuron is active only where 30 x_0 > 0.2 - 30 w x_1
    (|w| <= 0.3), so the rows with x_0 < -1 and |x_1| < 1 feed no pattern's prediction term."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    net = lc.ParallelReLU(2, m, K, bias=True).double()
    with torch.no_grad():
        net.W1[:, 0] = 1.0
        net.W1[:, 1] = 0.6 * torch.rand(K, m, generator=gen, dtype=torch.float64) - 0.3
        net.W1[:, 2] = -0.2
        net.w2.copy_(torch.rand(K, m, generator=gen, dtype=torch.float64) + 0.5)
        net.w3.copy_(torch.randn(K, generator=gen, dtype=torch.float64))
    y = torch.relu(X[:, 0]) + 0.1 * torch.randn(n, generator=gen, dtype=torch.float64)
    free = (X[:, 0] < -1) & (X[:, 1].abs() < 1)
    y[free] += 3.0  # targets no point of S can predict
    # large features make ||X^T v|| large against beta, so the dual scaling c is far below 1
    return 30.0 * X, y, net, free


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rows_no_pattern_reaches_give_their_whole_share_of_the_bound(seed):
    # OPT(S) >= 1/2 sum over unreachable rows of y_i^2 (every point of S predicts 0 there): the
    # bound must reach that share too, not scale it down with the constrained rows' dual point
    beta = 0.1
    X, y, net, free = half_plane_network(seed)
    S = lc.patterns_of(net, X)
    assert not bool((S.D1 & S.D2[:, :, None])[:, free].any())
    assert int(free.sum()) >= 2
    opt = reference_optimum(X, y, S, beta)
    share = 0.5 * float(y[free].square().sum())
    for method, kw in (("engine", {"max_iter": 1}), ("fit", {}), ("exact", {})):
        cert = lc.certify(net, X, y, beta, method=method, **kw)
        assert cert.lower_bound <= opt + solver_tol(opt), (method, cert.lower_bound, opt)
        if method != "fit":  # the fit scores its one point by itself
            assert cert.lower_bound >= share * (1 - 1e-9), (method, cert.lower_bound, share)


@pytest.mark.parametrize("seed", [0, 2, 4])
def test_a_carried_engine_state_improves_the_bound_over_cold_on_a_fixed_network(seed):
    beta = 0.1
    X, y, net = trained(seed, n=80, d=4, K=6, m=3, steps=100, beta=beta)
    opt = reference_optimum(X, y, lc.patterns_of(net, X), beta)
    cold = lc.certify(net, X, y, beta, method="engine", max_iter=5)
    previous, bounds = None, []
    for _ in range(6):  # a callback certifying the same network six times, 5 iterations each
        previous = lc.certify(net, X, y, beta, method="engine", max_iter=5, warm_start=previous)
        bounds.append(previous.lower_bound)
        assert previous.lower_bound <= opt + solver_tol(opt)
    assert previous.info["total_iterations"] == 30
    assert bounds[0] == pytest.approx(cold.lower_bound, rel=1e-12)  # the first one is the cold one
    assert bounds[-1] > 1.1 * cold.lower_bound
