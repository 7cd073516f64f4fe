"""certify's methods (exact, engine, fit) on trained networks, the non-optimality margin, the
branch rescaling of the network's dual point, and option validation.

References are independent of the code under test: OPT(S) from the explicit CVXPY model of
MATH.md section 3 (tests/hybrid_reference.py), a K-variable quadratic solved by scipy's L-BFGS-B
to its tightest tolerance, and networks rebuilt from the optimum over every hyperplane
arrangement (d' = 2), which are globally optimal.
"""

import math

import numpy as np
import pytest
import torch

import lightning_convex as lc
from lightning_convex.callbacks import ConvexCertificate
from lightning_convex.certificates.dual_point import branch_scales

from conftest import reference_optimum


def solver_tol(value):
    return 1e-7 * (1.0 + abs(value))


def trained(seed, n=50, d=3, K=5, m=3, steps=200, beta=0.1, lr=1e-2):
    """A network after ``steps`` full-batch Adam steps on J (the setting of issue 14)."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = torch.relu(X @ torch.randn(d, generator=gen, dtype=torch.float64)) + 0.3 * torch.randn(
        n, generator=gen, dtype=torch.float64)
    torch.manual_seed(seed)
    net = lc.ParallelReLU(d, m, K, bias=True).double()
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        (0.5 * (net(X) - y).square().sum() + beta * net.regularizer()).backward()
        optimizer.step()
    return X, y, net


@pytest.mark.parametrize("seed,steps", [(0, 50), (1, 300), (2, 1000)])
def test_every_method_is_valid_and_exact_is_tight_on_trained_networks(seed, steps):
    beta = 0.1
    X, y, net = trained(seed, steps=steps, beta=beta)
    opt = reference_optimum(X, y, lc.patterns_of(net, X), beta)
    auto = lc.certify(net, X, y, beta)
    assert auto.method == "exact"  # a tiny program: solved
    for method in ("exact", "engine", "fit"):
        cert = lc.certify(net, X, y, beta, method=method, max_iter=30 if method == "engine" else None)
        assert cert.method == method
        assert cert.lower_bound <= opt + solver_tol(opt), (method, cert.lower_bound, opt)
        assert cert.primal >= opt - solver_tol(opt)
        assert cert.lower_bound > 0
    # the exact method's gap is J - OPT(S) to solver precision: q = (J - LB) / (J - OPT) ~ 1
    assert auto.primal - opt > 1e-6 * auto.primal  # a network still in training
    assert (auto.primal - auto.lower_bound) <= (auto.primal - opt) * (1 + 1e-5) + solver_tol(opt)


def test_engine_is_valid_with_sampled_patterns_and_a_carried_state():
    beta = 0.1
    X, y, net = trained(3, n=60, steps=100, beta=beta)
    gen = torch.Generator().manual_seed(0)
    first = lc.certify(net, X, y, beta, extra_patterns=4, generator=gen, method="engine", max_iter=5)
    S = first.patterns
    assert len(S) == first.num_patterns and first.scope.endswith("4 sampled")
    opt = reference_optimum(X, y, S, beta)
    assert first.lower_bound <= opt + solver_tol(opt)
    # the same rows and set: continuing the carried iterate is still a valid bound
    second = lc.certify(net, X, y, beta, patterns=S, method="engine", max_iter=5, warm_start=first)
    assert second.info["total_iterations"] == first.info["total_iterations"] + 5
    assert second.lower_bound <= opt + solver_tol(opt)
    # the carried state on a moved network (other patterns, same shapes) too
    with torch.no_grad():
        net.W1.mul_(1.3).add_(0.05)
    moved = lc.certify(net, X, y, beta, method="engine", max_iter=5, warm_start=second)
    opt_moved = reference_optimum(X, y, lc.patterns_of(net, X), beta)
    assert moved.lower_bound <= opt_moved + solver_tol(opt_moved)


# ------------------------------------------------------------------------------------------------
# suboptimal: a claim only beyond the margin
# ------------------------------------------------------------------------------------------------
def _line_data(seed, n=14):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 1, generator=gen, dtype=torch.float64)
    y = torch.relu(X[:, 0] - 0.3) - 0.5 * torch.relu(-X[:, 0]) + 0.1 * torch.randn(n, generator=gen,
                                                                                  dtype=torch.float64)
    return X, y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_not_suboptimal_at_the_enumerated_global_optimum(seed):
    """d' = 2 (one feature and the bias): every arrangement enumerated, so the optimum over it is
    the global optimum of the two-layer network (MATH.md section 3); the search must not claim
    a descent direction beyond the margin."""
    beta = 0.05
    X, y = _line_data(seed)
    S = lc.enumerate_patterns(X, 1, depth=2, bias=True)
    solution = lc.solve(lc.RestrictedProgram(X, y, S, beta), solver="clarabel")
    assert solution.is_optimal
    opt = reference_optimum(X, y, S, beta)
    assert math.isclose(solution.objective, opt, rel_tol=1e-6)
    net = lc.to_network(solution)
    cert = lc.certify(net, X, y, beta, patterns=S, search=32, exhaustive=True,
                      generator=torch.Generator().manual_seed(seed))
    assert cert.scope == "global"
    assert not cert.suboptimal and cert.violating_patterns is None and cert.violating_weights is None
    assert cert.max_violation <= 1 + cert.margin


def test_suboptimal_on_a_stuck_network_with_a_clear_violator():
    beta = 0.05
    X, y = _line_data(5, n=40)
    S = lc.enumerate_patterns(X, 1, depth=2, bias=True)
    opt = reference_optimum(X, y, S, beta)
    torch.manual_seed(0)
    net = lc.ParallelReLU(1, 1, 2, depth=2, bias=True).double()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(20):  # far from converged
        optimizer.zero_grad()
        (0.5 * (net(X) - y).square().sum() + beta * net.regularizer()).backward()
        optimizer.step()
    J = lc.objective(net, X, y, beta)
    assert J > 1.01 * opt
    cert = lc.certify(net, X, y, beta, search=32, generator=torch.Generator().manual_seed(1))
    assert cert.suboptimal and cert.max_violation > 1 + 1e-3
    W1, w2, w3 = cert.violating_weights
    # every listed branch is above the margin: recompute r . f / beta independently
    r = (y - net(X)).detach().numpy()
    Xf = np.hstack([X.numpy(), np.ones((X.shape[0], 1))])
    for k in range(W1.shape[0]):
        f = float(w3[k]) * np.maximum(Xf @ W1[k, :, 0].numpy(), 0)
        R = np.linalg.norm(W1[k, :, 0].numpy()) * abs(float(w3[k]))
        assert (r @ f) / R / beta > 1 + cert.margin
    # a margin above the violation withdraws the claim, the raw number stays
    high = lc.certify(net, X, y, beta, search=32, generator=torch.Generator().manual_seed(1),
                      margin=cert.max_violation)
    assert not high.suboptimal and high.violating_weights is None
    assert high.max_violation == cert.max_violation


# ------------------------------------------------------------------------------------------------
# the network's dual point: the branch rescaling
# ------------------------------------------------------------------------------------------------
def test_branch_scales_solve_the_bound_constrained_quadratic():
    """Against scipy's L-BFGS-B at its tightest tolerances, on random, rank-deficient (repeated
    and dead branches) and ill-conditioned Gram matrices, and alpha = 1 where 1 is the optimum."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(0)
    for t in range(60):
        K, n = int(rng.integers(1, 15)), int(rng.integers(2, 40))
        F = rng.standard_normal((K, n))
        if t % 3 == 0 and K > 1:
            F[1] = 2 * F[0]  # a repeated direction: singular Gram matrix
        if t % 4 == 0:
            F[0] = 0.0  # a dead branch
        if t % 5 == 0:
            F = np.abs(F) + 10  # nearly parallel branches
        y, cost = rng.standard_normal(n), rng.random(K)
        G, h = F @ F.T, F @ y - cost
        alpha = branch_scales(torch.tensor(G), torch.tensor(F @ y), torch.tensor(cost)).numpy()
        assert alpha.min() >= 0

        def value(a):
            return 0.5 * a @ G @ a - h @ a

        ref = minimize(lambda a: (value(a), G @ a - h), np.ones(K), jac=True, method="L-BFGS-B",
                       bounds=[(0, None)] * K, options=dict(maxiter=50000, ftol=1e-16, gtol=1e-14))
        assert value(alpha) <= ref.fun + 1e-9 * (1 + abs(ref.fun)), t
    for seed in range(5):
        F = np.random.default_rng(seed).standard_normal((6, 30))
        G = F @ F.T
        alpha = branch_scales(torch.tensor(G), torch.tensor(G @ np.ones(6)), torch.zeros(6))
        assert torch.allclose(alpha, torch.ones(6, dtype=torch.float64), rtol=0, atol=1e-10), (seed, alpha - 1)


# ------------------------------------------------------------------------------------------------
# options
# ------------------------------------------------------------------------------------------------
BAD_OPTIONS = [
    ("iterations", -1), ("iterations", 2.5), ("support", 0), ("support", True), ("refine", "yes"),
    ("refine", 1), ("refine_rounds", -1), ("search_steps", -3), ("time_limit", 0), ("time_limit", -1.0),
    ("max_iter", 0), ("margin", -1e-3), ("method", "best"), ("dual_point", "raw"),
    ("engine_dtype", torch.int32), ("fit_dtype", "float64"), ("membership_tol", -1.0),
]


@pytest.mark.parametrize("name,value", BAD_OPTIONS)
def test_bad_options_name_the_parameter(name, value):
    X, y, net = trained(4, n=20, K=2, m=2, steps=0)
    with pytest.raises((ValueError, TypeError), match=name):
        lc.certify(net, X, y, 0.1, **{name: value})
    with pytest.raises((ValueError, TypeError), match=name):
        ConvexCertificate(**{name: value})


def test_good_options_pass_and_unknown_keywords_fail_at_construction():
    X, y, net = trained(4, n=20, K=2, m=2, steps=0)
    for options in (dict(iterations=None), dict(iterations=0, support=1, refine=True, method="fit"),
                    dict(refine=False, refine_rounds=0, search_steps=0, search=2)):
        lc.certify(net, X, y, 0.1, **options)
    ConvexCertificate(method="engine", max_iter=3, margin=1e-4, search_steps=10)
    with pytest.raises(TypeError, match="unknown certify option 'max_iters'"):
        ConvexCertificate(max_iters=3)
    with pytest.raises(TypeError, match="unknown certify option 'X'"):
        ConvexCertificate(X=X)
