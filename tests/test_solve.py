import numpy as np
import pytest
import torch

import lightning_convex as lc
from lightning_convex.enumerate import enumerate_patterns
from lightning_convex.reconstruct import network_variable
from conftest import reference_optimum


def make_program(seed, n=40, d=4, m=3, K=5, depth=3, bias=False, extra=0, beta=0.1):
    torch.manual_seed(seed)
    X = torch.randn(n, d, dtype=torch.float64)
    y = torch.randn(n, dtype=torch.float64)
    net = lc.ParallelReLU(d, m if depth == 3 else 1, K, depth=depth, bias=bias).double()
    pats = lc.patterns_of(net, X)
    if extra:
        pats = pats.union(lc.sample_patterns(X, extra, net.hidden, depth=depth, bias=bias,
                                             generator=torch.Generator().manual_seed(seed)))
    return X, y, net, pats, lc.RestrictedProgram(X, y, pats, beta)


CASES = [
    dict(seed=0),
    dict(seed=1, bias=True),
    dict(seed=2, depth=2, K=6),
    dict(seed=3, depth=2, bias=True, extra=6),
    dict(seed=4, extra=8, m=2),
]


@pytest.mark.parametrize("case", CASES)
def test_clarabel_matches_independent_cvxpy_model(case):
    X, y, net, pats, prog = make_program(**case)
    ref = reference_optimum(X.numpy(), y.numpy(), pats, prog.beta, bias=prog.bias)
    for formulation in ("residual", "hessian"):
        sol = lc.solve(prog, solver="clarabel", formulation=formulation)
        assert sol.is_optimal
        assert abs(sol.objective - ref) <= 1e-6 * abs(ref)
        assert sol.constraint_violation <= 1e-7
    assert abs(lc.solve(prog, solver="cvxpy").objective - ref) <= 1e-6 * abs(ref)
    # the network is feasible for its own active set, so OPT(S) <= J(net)
    assert ref <= lc.objective(net, X, y, prog.beta) + 1e-9


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("regularization", ["path", "paper"])
def test_rebuilt_network_reproduces_convex_objective(case, regularization):
    X, y, net, pats, prog = make_program(**case)
    sol = lc.solve(prog, solver="clarabel")
    rebuilt = lc.to_network(sol, regularization=regularization)
    assert rebuilt.branches <= len(pats)
    J = lc.objective(rebuilt, X, y, prog.beta)
    assert abs(J - sol.objective) <= 1e-8 * sol.objective
    if regularization == "paper" and rebuilt.depth == 3:
        assert float(rebuilt.W1.flatten(1).norm(dim=1).max()) <= 1 + 1e-9


def test_load_solution_in_place_and_spare_branches():
    X, y, net, pats, prog = make_program(5, K=6, beta=0.5)
    sol = lc.solve(prog, solver="clarabel")
    active = int(sol.active_patterns().sum())
    assert active < net.branches  # this draw leaves spare branches
    W1_id = id(net.W1)
    net.load_solution_(sol)
    assert id(net.W1) == W1_id
    assert abs(lc.objective(net, X, y, prog.beta) - sol.objective) <= 1e-8 * sol.objective
    spare = net.w3.detach()[active:]
    assert torch.count_nonzero(spare) == 0 and torch.count_nonzero(net.W1.detach()[active:]) == 0


def test_load_solution_refuses_too_many_patterns_and_other_architectures():
    X, y, net, pats, prog = make_program(6, K=4, extra=20, beta=0.01)
    sol = lc.solve(prog, solver="clarabel")
    assert int(sol.active_patterns().sum()) > 4
    small = lc.ParallelReLU(4, 3, 4).double()
    before = [p.detach().clone() for p in small.parameters()]
    with pytest.raises(ValueError, match="nonzero patterns"):
        small.load_solution_(sol)
    assert all(torch.equal(a, b) for a, b in zip(before, small.parameters()))
    with pytest.raises(ValueError, match="in_features, hidden, depth, bias"):
        lc.load_solution_(lc.ParallelReLU(4, 2, 50).double(), sol)


@pytest.mark.parametrize("case", CASES[:3])
def test_multipliers_are_dual_feasible(case):
    X, y, net, pats, prog = make_program(**case)
    sol = lc.solve(prog, solver="clarabel")
    mu1, mu2 = sol.multipliers
    assert float(mu1.min()) >= 0
    g = prog.predict_adjoint(sol.residual) + prog.cone_adjoint(mu1, mu2)
    assert float(g.norm(dim=2).max()) <= prog.beta * (1 + 1e-5)


def test_large_beta_gives_zero_optimum():
    X, y, net, pats, prog = make_program(7)
    # beta above every ||X^T y|| bound: Q = 0 is optimal, J = 1/2 ||y||^2
    beta = 10 * float((X.T @ y).norm()) * X.shape[0]
    prog = lc.RestrictedProgram(X, y, pats, beta)
    sol = lc.solve(prog, solver="clarabel")
    assert sol.is_optimal
    assert abs(sol.objective - 0.5 * float(y @ y)) <= 1e-7 * float(y @ y)
    assert float(sol.pattern_norms().max()) <= 1e-8


def test_duplicated_patterns_and_rank_deficient_X():
    torch.manual_seed(8)
    base = torch.randn(30, 2, dtype=torch.float64)
    X = torch.cat([base, base[:, :1] + base[:, 1:]], dim=1)  # rank 2 in 3 columns
    y = torch.randn(30, dtype=torch.float64)
    net = lc.ParallelReLU(3, 2, 4).double()
    pats = lc.concatenate([lc.patterns_of(net, X)] * 2)
    prog = lc.RestrictedProgram(X, y, pats, 0.1)
    sol = lc.solve(prog, solver="clarabel")
    ref = reference_optimum(X.numpy(), y.numpy(), pats.unique(), 0.1)
    assert abs(sol.objective - ref) <= 1e-6 * ref


def test_depth2_matches_pilanci_ergen_two_layer_program():
    """Depth 2 over both signs of each arrangement equals the two-layer convex program
    min 1/2||sum_i D_i X (v_i - w_i) - y||^2 + beta sum (||v_i|| + ||w_i||),
    (2D_i - I) X v_i >= 0, (2D_i - I) X w_i >= 0 (Pilanci & Ergen 2020), written here in CVXPY."""
    import cvxpy as cp

    torch.manual_seed(9)
    X = torch.randn(25, 3, dtype=torch.float64)
    y = torch.randn(25, dtype=torch.float64)
    arr = lc.sample_patterns(X, 12, 1, depth=2, generator=torch.Generator().manual_seed(3))
    D = torch.unique(arr.D1[:, :, 0], dim=0).numpy().astype(float)
    Xn, yn, beta = X.numpy(), y.numpy(), 0.2
    v = [cp.Variable(3) for _ in D]
    w = [cp.Variable(3) for _ in D]
    pred = sum(cp.multiply(Di, Xn @ (vi - wi)) for Di, vi, wi in zip(D, v, w))
    cons = [cp.multiply(2 * Di - 1, Xn @ vi) >= 0 for Di, vi in zip(D, v)]
    cons += [cp.multiply(2 * Di - 1, Xn @ wi) >= 0 for Di, wi in zip(D, w)]
    reg = sum(cp.norm(vi) + cp.norm(wi) for vi, wi in zip(v, w))
    pe = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(pred - yn) + beta * reg), cons)
    pe.solve(solver="CLARABEL")
    D1 = torch.as_tensor(np.repeat(D, 2, axis=0) > 0.5)[:, :, None]
    sig = torch.tensor([1, -1] * len(D), dtype=torch.int8)
    pats = lc.PatternSet(D1, None, sig[:, None].clone(), sig, False)
    sol = lc.solve(lc.RestrictedProgram(X, y, pats, beta), solver="clarabel")
    assert abs(sol.objective - pe.value) <= 1e-6 * pe.value
    rebuilt = lc.to_network(sol)
    assert abs(lc.objective(rebuilt, X, y, beta) - pe.value) <= 1e-6 * pe.value


def _adam_fit(X, y, beta, K, m, seed, steps=1500):
    torch.manual_seed(seed)
    net = lc.ParallelReLU(X.shape[1], m, K).double()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(2.0)
    opt = torch.optim.Adam(net.parameters(), lr=2e-2)
    for _ in range(steps):
        opt.zero_grad()
        loss = 0.5 * (net(X) - y).square().sum() + beta * net.regularizer()
        loss.backward()
        opt.step()
    return net


def test_exhaustive_optimum_is_never_beaten_by_sgd_or_random_networks():
    torch.manual_seed(10)
    X = torch.randn(4, 2, dtype=torch.float64)
    y = torch.randn(4, dtype=torch.float64)
    beta = 0.05
    S = enumerate_patterns(X, hidden=2)
    opt = lc.solve(lc.RestrictedProgram(X, y, S, beta), solver="clarabel")
    assert opt.is_optimal
    values = []
    for seed in range(6):
        for K in (2, 6):
            values.append(lc.objective(_adam_fit(X, y, beta, K, 2, seed), X, y, beta))
    for seed in range(200):
        torch.manual_seed(1000 + seed)
        net = lc.ParallelReLU(2, 2, 3).double()
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(3.0)
        values.append(lc.objective(net, X, y, beta))
    assert min(values) >= opt.objective - 1e-6 * opt.objective
    # and SGD with enough branches comes close to it: the bound is attained, not vacuous
    assert min(values[:12]) <= opt.objective * 1.05


def test_solver_status_paths_and_errors():
    X, y, net, pats, prog = make_program(11)
    sol = lc.solve(prog, solver="clarabel", max_iter=1)
    assert sol.status == lc.SolveStatus.ITERATION_LIMIT and not sol.is_optimal
    with pytest.raises(ValueError, match="unknown solver"):
        lc.solve(prog, solver="gurobi-please")
    with pytest.raises(TypeError, match="RestrictedProgram"):
        lc.solve("program")


def test_enumeration_guards():
    X = torch.randn(5, 3)
    with pytest.raises(ValueError, match="d' <= 2"):
        enumerate_patterns(X, hidden=1)
    with pytest.raises(ValueError, match="n=13"):
        enumerate_patterns(torch.randn(13, 2), hidden=1)


# ------------------------------------------------------------------------------------------------
# what a careless call must not do silently (issue 15)
# ------------------------------------------------------------------------------------------------
def test_non_optimal_solution_is_refused_unless_asked():
    X, y, net, pats, prog = make_program(21, bias=True)
    stopped = lc.solve(prog, solver="clarabel", max_iter=2)
    assert stopped.status == lc.SolveStatus.ITERATION_LIMIT
    before = {k: v.clone() for k, v in net.state_dict().items()}
    J_before = lc.objective(net, X, y, prog.beta)
    with pytest.raises(ValueError, match="not optimal"):
        net.load_solution_(stopped)
    with pytest.raises(ValueError, match="not optimal"):
        lc.load_solution_(net, stopped)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    # written on request, and a rise of J it causes is reported: three times the network's own
    # variable is feasible for its cones and overshoots the targets
    worse = lc.Solution.from_variable(prog, 3.0 * network_variable(net, X, pats),
                                      status=lc.SolveStatus.ITERATION_LIMIT, seconds=0.0, iterations=2,
                                      solver="stopped")
    assert worse.objective > J_before
    with pytest.warns(UserWarning, match="J rose"):
        net.load_solution_(worse, allow_inexact=True)
    assert lc.objective(net, X, y, prog.beta) == pytest.approx(worse.objective, rel=1e-9)


def test_integer_data_is_converted_straight_to_float64():
    n, d = 30, 3
    gen = torch.Generator().manual_seed(0)
    X = torch.randint(2**25, 2**26, (n, d), generator=gen, dtype=torch.int64)  # above 2^24
    y = torch.randint(0, 5, (n,), generator=gen)
    torch.manual_seed(0)
    net = lc.ParallelReLU(d, 2, 3, bias=True).double()
    with torch.no_grad():
        net.W1.mul_(1e-7)
    assert lc.objective(net, X, y, 0.1) == lc.objective(net, X.double(), y.double(), 0.1)
    pats = lc.patterns_of(net, X)
    program = lc.RestrictedProgram(X, y, pats, 0.1)
    assert program.features.dtype == torch.float64
    assert torch.equal(program.rows.X, X.double())
    with pytest.raises(ValueError, match="floating torch dtype"):
        lc.RestrictedProgram(X, y, pats, 0.1, dtype=torch.int64)


def test_forward_names_the_wrong_input():
    net = lc.ParallelReLU(3, 2, 2)
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        net(np.zeros((4, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="int64.*float32"):
        net(torch.zeros(4, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="float64.*float32"):
        net(torch.zeros(4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        net(torch.zeros(4, 5))


def test_bad_arguments_are_named():
    X, y, net, pats, prog = make_program(31)
    with pytest.raises(ValueError, match="CVXPY solver 'NOPE' is not installed"):
        lc.solve(prog, solver="cvxpy", cvxpy_solver="NOPE")
    with pytest.raises(ValueError, match="hidden must be an integer >= 1"):
        lc.sample_patterns(X, 3, 0)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        lc.sample_patterns(X, 3, 2, generator=1)
    with pytest.raises(TypeError, match="solution must be a Solution"):
        lc.to_network(None)
