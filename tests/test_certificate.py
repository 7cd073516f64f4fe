"""certify(): validity against independent restricted optima, tightness at the optimum, the search.

References are solved independently of the code under test: an explicit CVXPY model of MATH.md
section 3 written here from the formulas (no RestrictedProgram), and the library's Clarabel
backend (itself checked against CVXPY in the foundation's tests).
"""

import math

import numpy as np
import pytest
import torch

import lightning_convex as lc
from lightning_convex.certificates import RowSync, search_violations

from conftest import reference_optimum


# ------------------------------------------------------------------------------------------------
# independent references
# ------------------------------------------------------------------------------------------------
def clarabel_solution(X, y, patterns, beta):
    solution = lc.solve(lc.RestrictedProgram(X, y, patterns, beta), solver="clarabel")
    assert solution.is_optimal, solution
    return solution


def random_case(seed, n=40, d=4, K=5, m=3, depth=3, bias=True, regularization="path", scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = torch.randn(n, generator=gen, dtype=torch.float64) + torch.relu(X[:, 0])
    torch.manual_seed(seed)
    net = lc.ParallelReLU(d, m if depth == 3 else 1, K, depth=depth, bias=bias,
                          regularization=regularization).double()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(scale)
    net.project_()
    return X, y, net


def solver_tol(value):
    # the references stop at 1e-10 to 1e-8 relative; allow a little more than that
    return 1e-7 * (1.0 + abs(value))


# ------------------------------------------------------------------------------------------------
# validity: lower_bound <= OPT(S) on random non-optimal networks
# ------------------------------------------------------------------------------------------------
CASES = [
    # (n, d, K, m, depth, bias, regularization, beta, scale)
    (40, 4, 5, 3, 3, True, "path", 0.3, 1.0),
    (37, 3, 4, 2, 3, False, "path", 1.0, 2.0),
    (50, 5, 6, 3, 3, True, "paper", 0.1, 1.0),
    (45, 4, 6, 1, 2, True, "path", 0.5, 1.0),
    (30, 2, 3, 4, 3, True, "path", 0.05, 0.5),
    (60, 4, 4, 3, 3, True, "paper", 2.0, 3.0),
    (25, 6, 5, 2, 3, False, "path", 0.2, 1.0),
    (55, 3, 8, 1, 2, False, "paper", 0.1, 1.5),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_lower_bound_valid_against_independent_cvxpy(case):
    n, d, K, m, depth, bias, reg, beta, scale = CASES[case]
    for seed in range(2):
        X, y, net = random_case(100 * case + seed, n, d, K, m, depth, bias, reg, scale)
        cert = lc.certify(net, X, y, beta)
        opt = reference_optimum(X, y, lc.patterns_of(net, X), beta)
        assert cert.lower_bound <= opt + solver_tol(opt)
        assert cert.primal >= opt - solver_tol(opt)  # the network is feasible for its own set
        assert cert.gap >= 0 and cert.scope == "active set"
        assert cert.contains_network and cert.num_patterns == K
        assert math.isclose(cert.primal, lc.objective(net, X, y, beta), rel_tol=1e-12)
        assert cert.lower_bound > 0  # informative, not the trivial bound


def test_lower_bound_valid_on_many_networks_with_sampled_patterns():
    """Random architectures, sizes and betas; the set also holds sampled patterns."""
    rng = np.random.default_rng(7)
    for seed in range(16):
        depth = int(rng.choice([2, 3]))
        m = 1 if depth == 2 else int(rng.integers(1, 5))
        n, d, K = int(rng.integers(15, 70)), int(rng.integers(1, 6)), int(rng.integers(1, 7))
        beta = float(10 ** rng.uniform(-2, 0.5))
        X, y, net = random_case(1000 + seed, n, d, K, m, depth, bool(rng.integers(2)),
                                str(rng.choice(["path", "paper"])), float(10 ** rng.uniform(-1, 0.5)))
        extra = int(rng.integers(0, 4))
        gen = torch.Generator().manual_seed(seed)
        cert = lc.certify(net, X, y, beta, extra_patterns=extra, generator=gen)
        S = lc.concatenate([lc.patterns_of(net, X),
                            _same_sampled(X, extra, net, torch.Generator().manual_seed(seed))]) if extra else lc.patterns_of(net, X)
        opt = clarabel_solution(X, y, S, beta).objective
        assert cert.lower_bound <= opt + solver_tol(opt), (seed, cert.lower_bound, opt)
        assert cert.primal >= opt - solver_tol(opt)
        assert cert.num_patterns == len(S) and torch.equal(cert.patterns.D1, S.D1)
        assert cert.scope == ("active set" if not extra else f"active set + {len(S) - K} sampled")


def _same_sampled(X, count, net, gen):
    """The sampled patterns certify adds: lc.sample_patterns with the same generator."""
    return lc.sample_patterns(X, count, net.hidden, generator=gen, depth=net.depth, bias=net.bias)


def test_any_nonnegative_multipliers_give_a_valid_bound():
    """The bound is valid whatever mu >= 0 is handed in (here: large random ones)."""
    X, y, net = random_case(5, n=35, K=4, m=3)
    S = lc.patterns_of(net, X)
    opt = clarabel_solution(X, y, S, 0.4).objective
    gen = torch.Generator().manual_seed(0)
    mu1 = 50 * torch.rand(4, 35, 3, generator=gen, dtype=torch.float64)
    mu2 = 50 * torch.rand(4, 35, generator=gen, dtype=torch.float64)
    for refine in (False, True):
        cert = lc.certify(net, X, y, 0.4, multipliers=(mu1, mu2), refine=refine, iterations=0)
        assert cert.lower_bound <= opt + solver_tol(opt)


def test_float32_network_and_data():
    X, y, net = random_case(11, n=50, K=5, m=3)
    net32 = net.float()
    cert = lc.certify(net32, X.float(), y.float(), 0.3)
    S = lc.patterns_of(net32, X.float())
    opt = reference_optimum(X.float().double(), y.float().double(), S, 0.3)
    assert cert.lower_bound <= opt + solver_tol(opt)
    assert cert.primal >= opt - solver_tol(opt)


# ------------------------------------------------------------------------------------------------
# tightness at the restricted optimum
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("depth,reg,beta", [(3, "path", 0.5), (3, "paper", 0.2), (2, "path", 0.3), (3, "path", 0.05)])
def test_tight_at_the_restricted_optimum(depth, reg, beta):
    """Network rebuilt from the reference optimum, certified against the solved set: gap <= 1e-6."""
    for seed in range(3):
        X, y, net = random_case(200 + seed, n=60, d=4, K=6, m=3, depth=depth, regularization=reg)
        S = lc.patterns_of(net, X)
        solution = clarabel_solution(X, y, S, beta)
        opt = reference_optimum(X, y, S, beta)
        assert math.isclose(solution.objective, opt, rel_tol=1e-7)
        rebuilt = lc.to_network(solution, regularization=reg)
        cert = lc.certify(rebuilt, X, y, beta, patterns=S)
        assert cert.contains_network and cert.scope == "given set"
        assert cert.lower_bound <= opt + solver_tol(opt)
        assert cert.relative_gap <= 1e-6, (seed, cert)
        # the reference optimum is inside [lower_bound, primal] up to the solver's tolerance
        assert cert.primal >= opt - solver_tol(opt)


def test_tight_for_a_float32_rebuilt_network():
    X, y, net = random_case(300, n=60, d=4, K=6, m=3)
    S = lc.patterns_of(net, X)
    solution = clarabel_solution(X, y, S, 0.5)
    rebuilt = lc.ParallelReLU(4, 3, 6, bias=True)  # float32
    rebuilt.load_solution_(solution)
    cert = lc.certify(rebuilt, X, y, 0.5, patterns=S)
    assert 0 <= cert.relative_gap <= 1e-4


def test_solver_multipliers_are_used_after_a_solve():
    """With the solver's own multipliers the bound is tight even without the refinement."""
    X, y, net = random_case(400, n=60, d=4, K=6, m=3)
    S = lc.patterns_of(net, X)
    solution = clarabel_solution(X, y, S, 0.5)
    rebuilt = lc.to_network(solution)
    loose = lc.certify(rebuilt, X, y, 0.5, patterns=S, refine=False, iterations=5)
    tight = lc.certify(rebuilt, X, y, 0.5, solution=solution, refine=False, iterations=5)
    assert tight.relative_gap <= 1e-6 < loose.relative_gap
    # the solver's residual bounds OPT(S) for any network in S, here the unsolved one
    cert = lc.certify(net, X, y, 0.5, solution=solution)
    assert cert.lower_bound <= solution.objective + solver_tol(solution.objective)
    assert cert.lower_bound >= solution.objective - 1e-6 * solution.objective


def test_cone_multipliers_matter():
    """mu = 0 (no fit, no refinement) is far looser than the fitted / refined multipliers."""
    X, y, net = random_case(500, n=60, d=4, K=6, m=3)
    S = lc.patterns_of(net, X)
    rebuilt = lc.to_network(clarabel_solution(X, y, S, 0.5))
    zero = lc.certify(rebuilt, X, y, 0.5, patterns=S, iterations=0, refine=False)
    good = lc.certify(rebuilt, X, y, 0.5, patterns=S)
    assert zero.lower_bound < 0.5 * good.lower_bound


# ------------------------------------------------------------------------------------------------
# scope and membership
# ------------------------------------------------------------------------------------------------
def test_given_set_must_contain_the_network():
    X, y, net = random_case(600, n=40, K=4, m=2)
    other = lc.ParallelReLU(4, 2, 4, bias=True).double()
    S_other = lc.patterns_of(other, X)
    with pytest.raises(ValueError, match="does not lie in the given pattern set"):
        lc.certify(net, X, y, 0.3, patterns=S_other)
    cert = lc.certify(net, X, y, 0.3, patterns=S_other, strict=False)
    assert not cert.contains_network
    opt = clarabel_solution(X, y, S_other, 0.3).objective
    assert cert.lower_bound <= opt + solver_tol(opt)  # still a bound on OPT(S)
    # a set holding the network's patterns among others is accepted
    S = lc.union(S_other, lc.patterns_of(net, X))
    assert lc.certify(net, X, y, 0.3, patterns=S).contains_network


def test_scope_words():
    X, y, net = random_case(601, n=30, K=3, m=2)
    gen = torch.Generator().manual_seed(0)
    assert lc.certify(net, X, y, 0.3).scope == "active set"
    sampled = lc.sample_patterns(X, 4, net.hidden, generator=torch.Generator().manual_seed(0), bias=net.bias)
    assert 0 < len(sampled) <= 4
    cert = lc.certify(net, X, y, 0.3, extra_patterns=4, generator=gen)
    assert cert.scope == f"active set + {len(sampled)} sampled" and cert.num_patterns == 3 + len(sampled)
    S = lc.patterns_of(net, X)
    assert lc.certify(net, X, y, 0.3, patterns=S).scope == "given set"
    assert lc.certify(net, X, y, 0.3, patterns=S, exhaustive=True).scope == "global"


# ------------------------------------------------------------------------------------------------
# the search (MATH.md section 6)
# ------------------------------------------------------------------------------------------------
def independent_ratio(X, r, W1, w2, w3, bias):
    """r . f_theta'(X) / R_path(theta') in numpy."""
    X = np.asarray(X, dtype=np.float64)
    if bias:
        X = np.hstack([X, np.ones((X.shape[0], 1))])
    W1 = W1.cpu().numpy()
    w3 = float(w3)
    if w2 is None:
        f = w3 * np.maximum(X @ W1[:, 0], 0)
        R = np.linalg.norm(W1[:, 0]) * abs(w3)
    else:
        w2 = w2.cpu().numpy()
        f = w3 * np.maximum(np.maximum(X @ W1, 0) @ w2, 0)
        R = (np.linalg.norm(W1, axis=0) * np.abs(w2)).sum() * abs(w3)
    return float(np.asarray(r) @ f) / R


def test_search_finds_violations_that_lower_the_objective():
    """At the optimum over a small set, the search names patterns whose addition lowers OPT."""
    beta = 0.1
    X, y, net = random_case(702, n=50, d=3, K=3, m=2)
    S = lc.patterns_of(net, X)
    solution = clarabel_solution(X, y, S, beta)
    assert float(solution.pattern_norms().max()) > 1e-2  # a non-trivial optimum
    rebuilt = lc.to_network(solution)
    cert = lc.certify(rebuilt, X, y, beta, patterns=S, search=16, generator=torch.Generator().manual_seed(0))
    assert cert.max_violation > 1
    V = cert.violating_patterns
    assert V is not None and len(V) >= 1
    r = (y - lc.predict(rebuilt, X)).numpy()
    W1, w2, w3 = cert.violating_weights
    ratio = independent_ratio(X, r, W1[0], None if w2 is None else w2[0], w3[0], True)
    assert math.isclose(ratio / beta, cert.max_violation, rel_tol=1e-9)
    enlarged = clarabel_solution(X, y, lc.concatenate([S, V.select([0])]), beta)
    assert enlarged.objective < solution.objective * (1 - 1e-6)


def test_search_on_a_clearly_non_optimal_network():
    """A zero network on data from one ReLU: the residual correlates strongly with that ReLU."""
    gen = torch.Generator().manual_seed(3)
    X = torch.randn(80, 3, generator=gen, dtype=torch.float64)
    y = torch.relu(X @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    for depth in (2, 3):
        net = lc.ParallelReLU(3, 1 if depth == 2 else 2, 3, depth=depth).double()
        with torch.no_grad():
            net.w3.zero_()
        cert = lc.certify(net, X, y, 0.5, search=8, generator=torch.Generator().manual_seed(1))
        assert cert.max_violation > 5
        W1, w2, w3 = cert.violating_weights
        ratio = independent_ratio(X, y.numpy(), W1[0], None if w2 is None else w2[0], w3[0], False)
        assert math.isclose(ratio / 0.5, cert.max_violation, rel_tol=1e-9)


def test_search_violation_is_below_one_at_a_global_optimum_in_closed_form():
    """y = 0: the global optimum is f = 0 and no branch correlates with r = 0."""
    X = torch.randn(20, 3, dtype=torch.float64)
    y = torch.zeros(20, dtype=torch.float64)
    net = lc.ParallelReLU(3, 2, 2).double()
    with torch.no_grad():
        net.w3.zero_()
    cert = lc.certify(net, X, y, 0.1, search=4, generator=torch.Generator().manual_seed(0))
    assert cert.max_violation <= 0 and cert.violating_patterns is None
    assert cert.primal == 0 and cert.gap == 0


def test_search_function_directly():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(30, 3, dtype=torch.float64, generator=gen)
    r = torch.relu(X[:, 0])
    rho, U, w2, sigma = search_violations(X, r, 0.1, 3, 2, 6, steps=30, generator=gen, sync=RowSync())
    assert rho.shape == (6,) and U.shape == (6, 3, 2)
    # unit path norm and the reported ratio
    assert torch.allclose((U.norm(dim=1) * w2.abs()).sum(dim=1), torch.ones(6, dtype=torch.float64))
    k = int(rho.argmax())
    assert math.isclose(independent_ratio(X, r.numpy(), U[k], w2[k], sigma[k], False), float(rho[k]), rel_tol=1e-9)


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------
def test_errors():
    X, y, net = random_case(800, n=20, K=2, m=2)
    with pytest.raises(TypeError):
        lc.certify(torch.nn.Linear(4, 1), X, y, 0.1)
    bad = X.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        lc.certify(net, bad, y, 0.1)
    ybad = y.clone()
    ybad[0] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        lc.certify(net, X, ybad, 0.1)
    with pytest.raises(ValueError, match="beta"):
        lc.certify(net, X, y, 0.0)
    with pytest.raises(ValueError, match="columns"):
        lc.certify(net, X[:, :3], y, 0.1)
    with pytest.raises(ValueError, match="search"):
        lc.certify(net, X, y, 0.1, search=-1)
    with torch.no_grad():
        net.W1[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="parameter W1"):
        lc.certify(net, X, y, 0.1)


def test_wrong_pattern_shapes():
    X, y, net = random_case(801, n=20, K=2, m=2)
    other = lc.patterns_of(lc.ParallelReLU(4, 3, 2, bias=True).double(), X)
    with pytest.raises(ValueError, match="patterns are for"):
        lc.certify(net, X, y, 0.1, patterns=other)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():  # pragma: no cover - needs a GPU
    X, y, net = random_case(900, n=50, K=4, m=3)
    cpu = lc.certify(net, X, y, 0.3, search=4, generator=torch.Generator().manual_seed(0))
    gpu = lc.certify(net.cuda(), X.cuda(), y.cuda(), 0.3, search=4, generator=torch.Generator().manual_seed(0))
    assert math.isclose(cpu.lower_bound, gpu.lower_bound, rel_tol=1e-6)
    assert math.isclose(cpu.primal, gpu.primal, rel_tol=1e-12)


@pytest.mark.slow
def test_validity_on_forty_networks_slow():
    for seed in range(40):
        rng = np.random.default_rng(seed)
        depth = int(rng.choice([2, 3]))
        X, y, net = random_case(5000 + seed, int(rng.integers(20, 120)), int(rng.integers(2, 8)),
                                int(rng.integers(2, 10)), 1 if depth == 2 else int(rng.integers(1, 6)),
                                depth, True, "path", float(10 ** rng.uniform(-1, 0.5)))
        beta = float(10 ** rng.uniform(-2, 0.5))
        cert = lc.certify(net, X, y, beta)
        opt = reference_optimum(X, y, lc.patterns_of(net, X), beta)
        assert cert.lower_bound <= opt + solver_tol(opt)


def test_no_generator_leaves_the_global_rng_alone():
    X, y, net = random_case(907, n=30, K=3, m=2)
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    lc.certify(net, X, y, 0.3, extra_patterns=3, search=4)
    assert torch.equal(torch.rand(3), expected)
