"""The engine (issue 13): its operators against the program's, its prox and row projections against
direct minimisation, and its solves against an independent CVXPY + Clarabel optimum."""

import math

import numpy as np
import pytest
import torch
from conftest import reference_optimum

import lightning_convex as lc
from lightning_convex import engine
from lightning_convex.duality import program_bound, relative_gap
from lightning_convex.engine.cones import project_rows
from lightning_convex.engine.operators import Operators
from lightning_convex.engine.prox import EllipsoidProx, ellipsoid_prox


def make_program(seed, n=60, d=4, K=5, m=3, depth=3, bias=True, beta=0.1, extra=6):
    """Network-read patterns plus sampled ones (Remark 3) on Gaussian data."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(n, generator=g, dtype=torch.float64)
    torch.manual_seed(seed)
    net = lc.ParallelReLU(d, m, K, depth=depth, bias=bias).double()
    pats = lc.patterns_of(net, X)
    if extra:
        pats = pats.union(lc.sample_patterns(X, extra, m, generator=g, depth=depth, bias=bias))
    return lc.RestrictedProgram(X, y, pats, beta), net, X, y


CASES = {
    "depth3-bias": dict(seed=0),
    "depth3-nobias": dict(seed=2, bias=False),
    "depth2-bias": dict(seed=1, depth=2, m=1, K=8),
    "depth3-wide": dict(seed=6, n=50, d=3, K=4, m=5, beta=0.5),
    "all-zero": dict(seed=3, beta=100.0),
}


# -- building blocks -------------------------------------------------------------------------------
@pytest.mark.parametrize("whiten", [True, False])
@pytest.mark.parametrize("depth", [2, 3])
def test_operators_match_program(whiten, depth):
    """forward / adjoint in z coordinates equal the program's operators on q = to_q(z), and the
    adjoint is the transpose of the forward map."""
    prog, _, _, _ = make_program(4, depth=depth, m=1 if depth == 2 else 3, K=6)
    ops = Operators(prog, dtype=torch.float64, whiten=whiten, chunk=17)  # several row chunks
    g = torch.Generator().manual_seed(0)
    Z = torch.randn(ops.shape, generator=g, dtype=torch.float64)
    pred, R1, R2 = ops.forward(Z)
    ref_pred, ref_R1, ref_R2 = prog.forward(ops.to_q(Z))
    assert torch.allclose(pred, ref_pred, atol=1e-10)
    assert torch.allclose(R1, ref_R1.permute(1, 0, 2), atol=1e-10)
    if depth == 3:
        assert torch.allclose(R2, ref_R2.T, atol=1e-10)
    v = torch.randn(ops.n, generator=g, dtype=torch.float64)
    mu1 = torch.rand(R1.shape, generator=g, dtype=torch.float64)
    mu2 = None if depth == 2 else torch.rand(R2.shape, generator=g, dtype=torch.float64)
    C = ops.adjoint(v, mu1, mu2)
    lhs = float((C * Z).sum())
    rhs = float(v @ pred + (mu1 * R1).sum() + (0.0 if mu2 is None else (mu2 * R2).sum()))
    assert math.isclose(lhs, rhs, rel_tol=1e-10, abs_tol=1e-10)
    # the certificate's B_pj from the whitened adjoint equals the program's
    B = ops.bound_norms(C)
    ref = prog.adjoint(v, *ops.to_program_layout(mu1, mu2)).norm(dim=2)
    assert torch.allclose(B, ref, rtol=1e-9, atol=1e-10)


def test_prox_is_the_minimiser():
    """The ellipsoidal group prox beats any perturbation of itself and 0 (convex: that is optimality
    along those directions), and reduces to the group soft-threshold for unit weights."""
    g = torch.Generator().manual_seed(1)
    W = torch.randn(4, 3, 20, generator=g, dtype=torch.float64)
    a = torch.rand(20, generator=g, dtype=torch.float64) * 30 + 0.05
    t = torch.rand(4, 3, generator=g, dtype=torch.float64) * 4
    Z = ellipsoid_prox(W, a, t)

    def value(z, p, j):
        return float(t[p, j] * (a * z).norm() + 0.5 * (z - W[p, j]).square().sum())

    assert int((Z.norm(dim=2) == 0).sum()) > 0 and int((Z.norm(dim=2) > 0).sum()) > 0
    for p in range(4):
        for j in range(3):
            best = value(Z[p, j], p, j)
            assert best <= value(torch.zeros(20, dtype=torch.float64), p, j) + 1e-12
            for _ in range(20):
                step = 1e-4 * torch.randn(20, generator=g, dtype=torch.float64)
                assert best <= value(Z[p, j] + step, p, j) + 1e-12
    ones = torch.ones(20, dtype=torch.float64)
    soft = W * (1 - t[..., None] / W.norm(dim=2, keepdim=True)).clamp_min(0)
    assert torch.allclose(ellipsoid_prox(W, ones, t), soft, atol=1e-12)
    # a warm-started prox (the previous call's mu) returns the same point
    prox = EllipsoidProx(a)
    for k in range(5):
        Wk = W + 0.5 * k * torch.randn(W.shape, generator=g, dtype=torch.float64)
        assert torch.allclose(prox(Wk, t), ellipsoid_prox(Wk, a, t), atol=1e-10)


def test_row_projection_matches_a_qp():
    """project_rows equals the Euclidean projection computed by CVXPY, and its multipliers are
    nonnegative and reproduce the projection."""
    import cvxpy as cp

    g = torch.Generator().manual_seed(2)
    R, m = 40, 5
    Z = torch.randn(R, m, generator=g, dtype=torch.float64)
    D1f = (torch.rand(R, m, generator=g) > 0.4).double()
    s = torch.where(torch.rand(m, generator=g) > 0.5, 1.0, -1.0).double()
    S1 = s * (2 * D1f - 1)
    S2 = torch.where(torch.rand(R, generator=g) > 0.5, 1.0, -1.0).double()
    E, mu1, mu2 = project_rows(Z, S1, D1f, S2)
    assert float(mu1.min()) >= 0 and float(mu2.min()) >= 0
    assert torch.allclose(E, Z + S1 * mu1 + (S2 * mu2)[:, None] * D1f, atol=1e-12)
    for i in range(R):
        e = cp.Variable(m)
        cons = [cp.multiply(S1[i].numpy(), e) >= 0, S2[i].item() * (D1f[i].numpy() @ e) >= 0]
        cp.Problem(cp.Minimize(cp.sum_squares(e - Z[i].numpy())), cons).solve(solver="CLARABEL")
        assert np.abs(e.value - E[i].numpy()).max() < 1e-6


# -- solves ----------------------------------------------------------------------------------------
def check_against_reference(prog, sol, X, y, tol):
    ref = reference_optimum(X, y, prog.patterns, prog.beta)
    scale = max(ref, 1e-12)
    # the certificate is valid: the bound never exceeds the optimum, and it is what an independent
    # recomputation from the Solution's residual and multipliers gives
    bound = program_bound(prog, sol.residual, sol.multipliers)
    assert bound.value <= ref + 1e-9 * scale
    assert math.isclose(bound.value, sol.info["lower_bound"], rel_tol=1e-9, abs_tol=1e-12)
    assert float(sol.multipliers[0].min()) >= 0
    assert sol.multipliers[1] is None or float(sol.multipliers[1].min()) >= 0
    if sol.is_optimal:
        assert relative_gap(sol.objective, bound.value) <= tol
        # never better than optimal beyond what the allowed cone violation can buy
        assert sol.objective >= ref - 10 * tol * scale
        assert sol.objective <= ref + tol * scale
    return ref


@pytest.mark.parametrize("case", sorted(CASES))
def test_admm_certifies_the_optimum(case):
    prog, net, X, y = make_program(**CASES[case])
    sol = engine.solve(prog, time_limit=60, tol=1e-4, warm_start=net, dtype=torch.float64)
    assert sol.status == lc.SolveStatus.OPTIMAL, {k: v for k, v in sol.info.items() if k != "history"}
    assert sol.solver == "engine" and sol.info["method"] == "admm"
    check_against_reference(prog, sol, X, y, 1e-4)
    if case == "all-zero":
        assert int(sol.active_patterns().sum()) == 0


def test_pdhg_certifies_the_optimum():
    prog, net, X, y = make_program(0)
    sol = engine.solve(prog, time_limit=60, tol=1e-3, warm_start=net, method="pdhg", dtype=torch.float64)
    assert sol.status == lc.SolveStatus.OPTIMAL
    check_against_reference(prog, sol, X, y, 1e-3)


def test_float32_passes_certify_in_float64():
    prog, net, X, y = make_program(0)
    sol = engine.solve(prog, time_limit=60, tol=1e-3, warm_start=net, dtype=torch.float32)
    assert sol.status == lc.SolveStatus.OPTIMAL
    assert sol.info["dtype"] == "float32" and sol.Q.dtype == torch.float64
    check_against_reference(prog, sol, X, y, 1e-3)


def test_warm_start_from_a_solution_and_multipliers():
    """Restarting from a solution (its Q and multipliers) certifies at once; the multipliers of a
    loose solve passed alone (cold Q) still give a valid bound."""
    prog, net, X, y = make_program(0)
    first = engine.solve(prog, time_limit=60, tol=1e-4, warm_start=net)
    assert first.is_optimal
    again = engine.solve(prog, time_limit=60, tol=1e-4, warm_start=first, check_every=5)
    assert again.is_optimal and again.iterations <= 10
    assert again.info["warm_multipliers"]
    cold = engine.solve(prog, time_limit=60, tol=1e-4, multipliers=first.multipliers, max_iter=5)
    check_against_reference(prog, cold, X, y, 1e-4)


def test_time_limit_is_honoured():
    """A budget too small to certify ends the solve by its time limit (not by iterations) with the
    best iterate and a valid bound."""
    prog, net, X, y = make_program(5, n=200, d=6, K=6, m=5, beta=0.01, extra=4)
    sol = engine.solve(prog, time_limit=0.5, tol=1e-9, warm_start=net)
    assert sol.status == lc.SolveStatus.TIME_LIMIT
    assert sol.objective <= lc.objective(net, X, y, prog.beta) + 1e-9
    check_against_reference(prog, sol, X, y, 1e-9)


def test_callback_stops_and_options_are_checked():
    prog, net, _, _ = make_program(0)
    seen = []
    sol = engine.solve(prog, tol=1e-9, warm_start=net, check_every=10,
                       callback=lambda rec: seen.append(rec) or len(seen) == 3)
    assert len(seen) == 3 and sol.status == lc.SolveStatus.USER_LIMIT and sol.info["stop"] == "callback"
    for bad in (dict(tol=0), dict(time_limit=-1), dict(method="newton"), dict(check_every=0)):
        with pytest.raises(ValueError):
            engine.solve(prog, **bad)
    with pytest.raises(TypeError):
        engine.solve(prog, warm_start="net")
