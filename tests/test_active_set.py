"""active_set_solve: the restricted optimum, fixed points, monotonicity, failures, spare branches.

References are independent (tests/hybrid_reference.py: numpy J and patterns, a CVXPY model
written from MATH.md section 3), never values produced by the code under test.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import lightning_convex as lc
from lightning_convex import solvers
from lightning_convex.solution import Solution, SolveStatus

import hybrid_reference as ref

BETA = 0.1


def teacher_data(n=30, d=3, seed=0):
    """Targets from a random 2-branch teacher plus noise (the shape of MATH.md section 8's draws)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    W = torch.randn(2, d, generator=g)
    y = torch.relu(X @ W[0]) - 0.5 * torch.relu(X @ W[1]) + 0.1 * torch.randn(n, generator=g)
    return X, y


def make_net(depth=3, regularization="path", K=4, m=3, d=3, seed=1, bias=True):
    torch.manual_seed(seed)
    return lc.ParallelReLU(d, m if depth == 3 else 1, K, depth=depth, bias=bias,
                           regularization=regularization)


def state(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def same_state(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("depth,regularization", [(3, "path"), (3, "paper"), (2, "path")])
def test_network_equals_restricted_optimum_over_solved_set(depth, regularization):
    X, y = teacher_data()
    net = make_net(depth, regularization)
    J0, _ = ref.network_objective(net, X, y, BETA)
    result = lc.active_set_solve(net, X, y, BETA)
    assert result.changed and result.patterns is not None
    J, f = ref.network_objective(net, X, y, BETA)
    assert J < J0
    assert J == pytest.approx(result.objective_after, rel=1e-12)
    opt, fstar = ref.restricted_optimum(X, y, BETA, *ref.pattern_arrays(result.patterns), net.bias)
    assert abs(J - opt) <= 1e-6 * opt
    # J(Q) - OPT >= 1/2 ||f - f*||^2 for the strongly convex loss: the prediction is the optimum's
    assert 0.5 * np.square(f - fstar).sum() <= abs(J - opt) + 1e-7 * opt


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_converged_result_is_fixed_point_of_own_patterns(seed):
    X, y = teacher_data(seed=seed)
    net = make_net(seed=seed)
    result = lc.active_set_solve(net, X, y, BETA, max_rounds=60)
    assert result.converged and result.stop_reason in ("converged", "repeated")
    J, opt, _, _ = ref.own_optimum(net, X, y, BETA)
    # re-reading the network's patterns and solving (independently) gives nothing lower
    assert opt >= J * (1 - 1e-6)
    # and the rounds only ever went down
    assert all(b < a for a, b in zip(result.objectives, result.objectives[1:]))
    assert result.objective_after <= result.objective_before


def test_single_round_need_not_be_fixed_point():
    """MATH.md section 8: stopping after one solve claims nothing (converged stays False)."""
    X, y = teacher_data(seed=4)
    net = make_net(seed=4)
    result = lc.active_set_solve(net, X, y, BETA, max_rounds=1)
    if result.stop_reason == "max_rounds":
        assert not result.converged
    else:  # a one-round fixed point must then really be one
        J, opt, _, _ = ref.own_optimum(net, X, y, BETA)
        assert opt >= J * (1 - 1e-6)


def _register(monkeypatch, name, fn):
    monkeypatch.setitem(solvers.registry._BACKENDS, name, solvers.Backend.from_function(name, fn, solvers.Capabilities(warm_start=True)))


def test_failed_solve_leaves_network_untouched(monkeypatch):
    def failing(program, **options):
        return Solution.from_variable(program, program.zeros(), status=SolveStatus.NUMERICAL_ERROR,
                                      seconds=0.0, iterations=0, solver="failing",
                                      info={"tol": options.get("tol", 1e-9)})

    _register(monkeypatch, "failing", failing)
    X, y = teacher_data()
    net = make_net()
    before = state(net)
    with pytest.warns(UserWarning, match="left as it was"):
        result = lc.active_set_solve(net, X, y, BETA, solver="failing")
    assert result.stop_reason == "failed" and not result.changed and not result.converged
    assert same_state(before, state(net))
    assert result.statuses == ["numerical_error"] * 3  # the solve and two looser retries
    assert result.objective_after == result.objective_before


def test_retries_loosen_from_the_backends_own_default(monkeypatch):
    """A backend whose default is 1e-6 is retried at 1e-5 and 1e-4, never tighter, and the
    messages name the tolerance each attempt used."""
    asked = []

    def inaccurate(program, **options):
        asked.append(options.get("tol"))
        return Solution.from_variable(program, program.zeros(), status=SolveStatus.INACCURATE,
                                      seconds=0.0, iterations=0, solver="loose",
                                      info={"tol": options.get("tol", 1e-6)})

    _register(monkeypatch, "loose", inaccurate)
    X, y = teacher_data()
    result = lc.active_set_solve(make_net(), X, y, BETA, solver="loose", warn=False)
    assert asked == [None, pytest.approx(1e-5), pytest.approx(1e-4)]
    for used in ("1e-06", "1e-05", "1e-04"):
        assert any(f"at tol {used}" in m for m in result.messages), (used, result.messages)


def test_time_limit_stops_are_not_retried(monkeypatch):
    def out_of_time(program, **options):
        return Solution.from_variable(program, program.zeros(), status=SolveStatus.TIME_LIMIT,
                                      seconds=0.0, iterations=0, solver="slow", info={"tol": 1e-6})

    _register(monkeypatch, "slow", out_of_time)
    X, y = teacher_data()
    result = lc.active_set_solve(make_net(), X, y, BETA, solver="slow", warn=False)
    assert result.statuses == ["time_limit"] and result.stop_reason == "failed"


def test_non_finite_network_is_refused():
    X, y = teacher_data()
    net = make_net()
    with torch.no_grad():
        net.W1[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="W1 contains NaN"):
        lc.active_set_solve(net, X, y, BETA)


def test_no_generator_leaves_the_global_rng_alone():
    X, y = teacher_data()
    net = make_net()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    lc.active_set_solve(net, X, y, BETA, extra_patterns=5, max_rounds=2, spare="reseed")
    lc.sample_patterns(X, 4, 2, bias=True)
    assert torch.equal(torch.rand(3), expected)


def test_optimal_status_above_network_objective_is_rejected(monkeypatch):
    """A solver claiming 'optimal' at a point worse than the (feasible) network is not believed."""
    def lying(program, **options):
        return Solution.from_variable(program, program.zeros(), status=SolveStatus.OPTIMAL,
                                      seconds=0.0, iterations=0, solver="lying")

    _register(monkeypatch, "lying", lying)
    X, y = teacher_data()
    net = make_net()
    lc.active_set_solve(net, X, y, BETA)  # a network well below 1/2 ||y||^2
    before = state(net)
    with pytest.warns(UserWarning, match="above J"):
        result = lc.active_set_solve(net, X, y, BETA, solver="lying")
    assert result.stop_reason == "worse" and not result.changed and not result.converged
    assert same_state(before, state(net))


def test_inaccurate_solve_is_retried_looser_and_never_used(monkeypatch):
    calls = []

    def picky(program, tol=1e-9, **options):
        calls.append(tol)
        solution = solvers.solve(program, solver="clarabel", tol=tol, **options)
        if tol < 1e-8:  # an accurate answer, reported inaccurate: must not be used as is
            solution.status = SolveStatus.INACCURATE
        return solution

    _register(monkeypatch, "picky", picky)
    X, y = teacher_data()
    net = make_net()
    result = lc.active_set_solve(net, X, y, BETA, solver="picky")
    assert result.changed and "inaccurate" in result.statuses and "optimal" in result.statuses
    assert calls[:2] == [1e-9, pytest.approx(1e-8)]

    net = make_net()
    before = state(net)
    result = lc.active_set_solve(net, X, y, BETA, solver="picky", retries=0, warn=False)
    assert result.stop_reason == "failed" and same_state(before, state(net))


def test_each_solve_is_warm_started_from_the_network(monkeypatch):
    seen = []

    def recording(program, warm_start=None, **options):
        nets.append(None)
        seen.append((program, warm_start, copy.deepcopy(current[0])))
        return solvers.solve(program, solver="clarabel", **options)

    current, nets = [None], []
    _register(monkeypatch, "recording", recording)
    X, y = teacher_data()
    net = make_net()
    current[0] = net
    lc.active_set_solve(net, X, y, BETA, solver="recording", max_rounds=1)
    program, Q0, snapshot = seen[0]
    assert Q0 is not None and tuple(Q0.shape) == program.shape
    # the warm start reproduces the network: same prediction, feasible, objective <= J (path form)
    J, f = ref.network_objective(snapshot, X, y, BETA)
    np.testing.assert_allclose(program.predict(Q0).numpy(), f, atol=1e-5)
    assert program.constraint_violation(Q0) <= 1e-6
    assert program.objective(Q0) <= J * (1 + 1e-6)


def test_more_than_K_patterns_keeps_the_K_largest():
    X, y = teacher_data(n=40, seed=5)
    net = make_net(K=2, seed=5)
    J0, _ = ref.network_objective(net, X, y, BETA)
    g = torch.Generator().manual_seed(0)
    result = lc.active_set_solve(net, X, y, BETA, extra_patterns=40, generator=g)
    assert any("K largest" in m for m in result.messages)
    J, f = ref.network_objective(net, X, y, BETA)
    assert J <= J0 and result.active <= 2
    assert len(result.patterns) <= 2
    opt, _ = ref.restricted_optimum(X, y, BETA, *ref.pattern_arrays(result.patterns), net.bias)
    assert abs(J - opt) <= 1e-6 * opt


def test_spare_branches_zero_stay_dead_reseeded_can_learn():
    X, y = teacher_data(seed=6)
    zero = make_net(K=6, seed=6)
    res_zero = lc.active_set_solve(zero, X, y, BETA)
    spare = lc.active_set.spare_branches(zero)
    assert spare.any(), "expected unused branches"
    # exactly-zero branches get no gradient: SGD can never revive them
    J = 0.5 * (zero(X) - y).square().sum() + BETA * zero.regularizer()
    J.backward()
    assert float(zero.W1.grad[spare].abs().sum() + zero.w2.grad[spare].abs().sum()
                 + zero.w3.grad[spare].abs().sum()) == 0.0

    reseed = make_net(K=6, seed=6)
    spare_tol = 1e-6
    res = lc.active_set_solve(reseed, X, y, BETA, spare="reseed", spare_tol=spare_tol,
                              generator=torch.Generator().manual_seed(0))
    J_solved = res.objectives[-1]
    assert res_zero.objective_after == pytest.approx(J_solved, rel=1e-9)
    assert res.reseeded == int(spare.sum())
    J_after, _ = ref.network_objective(reseed, X, y, BETA)
    assert J_after <= res.objective_before
    assert J_after <= J_solved * (1 + spare_tol) + 1e-12
    assert not lc.active_set.spare_branches(reseed).any()
    reseed.zero_grad()
    (0.5 * (reseed(X) - y).square().sum() + BETA * reseed.regularizer()).backward()
    revived = reseed.w3.grad[spare].abs() + reseed.W1.grad[spare].flatten(1).abs().sum(1)
    assert bool((revived > 0).all())


def test_reseeding_never_raises_objective_without_a_gain():
    """At a fixed point the re-seeding budget is zero: only descent directions may be added."""
    X, y = teacher_data(seed=7)
    net = make_net(K=6, seed=7)
    lc.active_set_solve(net, X, y, BETA, max_rounds=60)
    J0, _ = ref.network_objective(net, X, y, BETA)
    res = lc.active_set_solve(net, X, y, BETA, spare="reseed", generator=torch.Generator().manual_seed(1))
    J1, _ = ref.network_objective(net, X, y, BETA)
    assert J1 <= J0 * (1 + 1e-12)
    assert res.objective_after <= res.objective_before


def test_search_violators_join_the_first_round(monkeypatch):
    X, y = teacher_data()
    net = make_net()
    violators = lc.sample_patterns(X, 5, net.hidden, generator=torch.Generator().manual_seed(3), bias=True)
    calls = []

    class Found:
        violating_patterns = violators

    def fake_certify(net_, X_, y_, beta_, search, generator):
        calls.append(search)
        return Found()

    programs = []

    def recording(program, **options):
        programs.append(program)
        return solvers.solve(program, solver="clarabel", **options)

    monkeypatch.setattr(lc.active_set, "certify", fake_certify)
    _register(monkeypatch, "recording", recording)
    lc.active_set_solve(net, X, y, BETA, solver="recording", search=16,
                        generator=torch.Generator().manual_seed(0))
    assert calls == [16]
    assert all(i >= 0 for i in violators.index_in(programs[0].patterns))


@pytest.mark.parametrize("kwargs,match", [
    ({"spare": "revive"}, "spare"),
    ({"max_rounds": 0}, "max_rounds"),
    ({"extra_patterns": -1}, "extra_patterns"),
    ({"rtol": 1.5}, "rtol"),
])
def test_bad_arguments(kwargs, match):
    X, y = teacher_data()
    with pytest.raises(ValueError, match=match):
        lc.active_set_solve(make_net(), X, y, BETA, **kwargs)


def test_wrong_data_shape():
    X, y = teacher_data()
    with pytest.raises(ValueError, match="columns"):
        lc.active_set_solve(make_net(), X[:, :2], y, BETA)
    with pytest.raises(TypeError):
        lc.active_set_solve(torch.nn.Linear(3, 1), X, y, BETA)


def test_interior_point_residue_does_not_take_branches():
    """Patterns an interior point leaves at ~1e-7 of the largest are zero at the optimum: they
    are dropped (the objective does not rise), so they occupy no branch; patterns that carry
    weight are kept."""
    X, y = teacher_data(seed=6)
    net = make_net(K=6, seed=6)
    pats = lc.patterns_of(net, X)
    pats = pats.select(~pats.is_degenerate()).unique()
    solution = lc.solve(lc.RestrictedProgram(X, y, pats, BETA), solver="clarabel")
    t = solution.pattern_norms()
    Q = solution.Q.clone()
    zero = int(torch.argmin(t))
    Q[zero] = Q[int(torch.argmax(t))] * 1e-8  # residue in a cone it need not lie in: stays tiny
    residue = Solution.from_variable(solution.program, Q, status=SolveStatus.OPTIMAL, seconds=0.0,
                                     iterations=0, solver="test")
    cleaned = lc.active_set.without_numerical_zeros(residue)
    kept = residue.pattern_norms() > 1e-6 * residue.pattern_norms().max()
    assert torch.equal(cleaned.pattern_norms() > 0, kept)
    assert cleaned.objective <= residue.objective * (1 + 1e-9)
