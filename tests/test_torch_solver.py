"""The torch backend (issue 7): optimum, rebuilt network, multipliers, statuses, the fused
operators it relies on, and the Fashion-MNIST loader."""

import copy
import gzip
import math
import struct

import numpy as np
import pytest
import torch

import lightning_convex as lc
from lightning_convex.fashion_mnist import available, load_fashion_mnist, read_idx
from lightning_convex.solvers.torch_backend import STATUS_MAP, Outcome, choose_method, warm_start_variable


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


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_clarabel(case):
    prog, _, X, y = make_program(**CASES[case])
    ref = lc.solve(prog, solver="clarabel")
    assert ref.is_optimal
    sol = lc.solve(prog, solver="torch")
    assert sol.status == lc.SolveStatus.OPTIMAL, sol.info
    assert sol.solver == "torch" and sol.info["method"] == "ipm"
    scale = max(ref.objective, 1e-12)
    assert abs(sol.objective - ref.objective) <= 1e-5 * scale
    # the certificate in info is a valid lower bound: it cannot exceed the reference optimum
    assert sol.info["lower_bound"] <= ref.objective * (1 + 1e-9)
    net = lc.to_network(sol)
    assert abs(lc.objective(net, X, y, prog.beta) - ref.objective) <= 1e-5 * scale
    if case == "all-zero":
        assert float(ref.Q.abs().max()) < 1e-6
        assert int(sol.active_patterns().sum()) == 0


@pytest.mark.parametrize("case", ["depth3-bias", "depth2-bias"])
def test_multipliers_certify(case):
    prog, *_ = make_program(**CASES[case])
    sol = lc.solve(prog, solver="torch")
    mu1, mu2 = sol.multipliers
    assert mu1.shape == (prog.P, prog.n, prog.m) and bool((mu1 >= 0).all())
    if prog.depth == 3:
        assert mu2.shape == (prog.P, prog.n) and bool((mu2 >= 0).all())
    else:
        assert mu2 is None
    v = sol.residual
    bounds = (prog.predict_adjoint(v) + prog.cone_adjoint(mu1, mu2)).norm(dim=2)
    # dual feasible up to the tolerance, and tight (= beta) on the groups in use
    assert float(bounds.max()) <= prog.beta * (1 + 1e-3)
    used = sol.group_norms() > 1e-3 * float(sol.group_norms().max())
    assert bool(used.any())
    assert float((bounds[used] - prog.beta).abs().max()) <= 1e-3 * prog.beta
    # MATH.md section 5 recomputed here from the returned residual and multipliers
    vy, vv = float(v @ prog.y), float(v @ v)
    c = min(max(vy / vv, 0.0), prog.beta / float(bounds.max()))
    lower = c * vy - 0.5 * c * c * vv
    assert lower <= sol.objective and sol.objective - lower <= 1e-5 * sol.objective
    assert math.isclose(sol.info["gap_own_residual"], (sol.objective - lower) / sol.objective,
                        rel_tol=1e-6, abs_tol=1e-12)
    assert sol.info["gap"] <= 1e-6


def test_alm_first_order_path():
    """The matrix-free method on a tiny program, at the loose tolerance it reaches in seconds."""
    prog, _, X, y = make_program(seed=5, n=24, d=3, K=3, m=2, extra=3, beta=0.5)
    ref = lc.solve(prog, solver="clarabel")
    sol = lc.solve(prog, solver="torch", method="alm", tol=1e-3, max_iter=20000)
    assert sol.status == lc.SolveStatus.OPTIMAL, sol.info
    assert sol.info["method"] == "alm"
    assert abs(sol.objective - ref.objective) <= 2e-3 * ref.objective
    assert sol.info["lower_bound"] <= ref.objective * (1 + 1e-9)
    mu1, mu2 = sol.multipliers
    assert bool((mu1 >= 0).all()) and bool((mu2 >= 0).all())
    # float32 working precision returns float64 results on the program's dtype
    sol32 = lc.solve(prog, solver="torch", method="alm", tol=1e-3, max_iter=20000, dtype=torch.float32)
    assert sol32.Q.dtype == torch.float64 and sol32.info["dtype"] == "float32"
    assert abs(sol32.objective - ref.objective) <= 5e-3 * ref.objective


def test_alm_warm_start_from_network_and_solution():
    prog, net, X, y = make_program(seed=7, n=30, d=3, K=3, m=2, extra=0, beta=0.3)
    Q0, mult, info = warm_start_variable(prog, net)
    assert info["warm_start_dropped_branches"] == 0 and mult is None
    # the network's q_kj lie in their cones and reproduce its output and path norm
    assert prog.constraint_violation(Q0) <= 1e-10
    assert torch.allclose(prog.predict(Q0), lc.predict(net, X), atol=1e-10)
    net.regularization = "path"
    assert math.isclose(prog.objective(Q0), lc.objective(net, X, y, prog.beta), rel_tol=1e-10)
    first = lc.solve(prog, solver="torch", method="alm", tol=1e-3, warm_start=net, max_iter=20000)
    assert first.is_optimal and first.objective <= prog.objective(Q0) + 1e-9
    again = lc.solve(prog, solver="torch", method="alm", tol=1e-3, warm_start=first, max_iter=20000)
    assert again.is_optimal and again.iterations <= first.iterations
    other, *_ = make_program(seed=8, n=30, d=3, K=3, m=2, extra=0)
    with pytest.raises(ValueError, match="different pattern set"):
        lc.solve(other, solver="torch", method="alm", warm_start=first)
    Qw, _, info = warm_start_variable(prog, first.Q)
    assert info["warm_start"] == "variable" and torch.equal(Qw, first.Q)
    for method in ("ipm", "alm"):
        with pytest.raises(TypeError, match="warm_start"):
            lc.solve(prog, solver="torch", method=method, warm_start="nope")


def test_active_set_rounds_with_torch_backend():
    """active_set_solve passes a tensor warm start; the torch backend takes it and the rounds
    reach the same fixed point objective as with Clarabel.

    Both interior points (no crossover): their solutions sit slightly inside the cones, so the
    rebuilt networks re-read the same patterns. An exact (crossed-over) solution sits on the
    cone boundaries and re-reading it can move the rounds to another fixed point (MATH.md
    section 8), here a lower one."""
    prog, net, X, y = make_program(seed=11, n=40, d=3, K=4, m=2, extra=0, beta=0.2)
    a, b = copy.deepcopy(net), copy.deepcopy(net)
    ra = lc.active_set_solve(a, X, y, prog.beta, solver="torch", solver_options={"tol": 1e-7, "crossover": False},
                             warn=False)
    rb = lc.active_set_solve(b, X, y, prog.beta, solver="clarabel", warn=False)
    assert ra.objective_after <= ra.objective_before
    assert math.isclose(ra.objective_after, rb.objective_after, rel_tol=1e-4)


@pytest.mark.parametrize("method", ["ipm", "alm"])
def test_limits_and_status(method):
    prog, *_ = make_program(seed=0)
    sol = lc.solve(prog, solver="torch", method=method, max_iter=1)
    assert sol.status == lc.SolveStatus.ITERATION_LIMIT
    assert sol.Q.shape == prog.shape and math.isfinite(sol.objective)
    sol = lc.solve(prog, solver="torch", method=method, time_limit=1e-9)
    assert sol.status == lc.SolveStatus.TIME_LIMIT


def test_status_map_covers_every_outcome():
    """Each way a method can end has a row in the table, and every row maps to a SolveStatus."""
    assert set(STATUS_MAP) == set(Outcome)
    assert all(isinstance(status, lc.SolveStatus) for status in STATUS_MAP.values())
    assert STATUS_MAP[Outcome.CONVERGED] == lc.SolveStatus.OPTIMAL
    assert all(status != lc.SolveStatus.OPTIMAL for o, status in STATUS_MAP.items() if o != Outcome.CONVERGED)


def test_interior_point_stall_is_inaccurate(monkeypatch):
    """The Newton system stops factoring after the start: the interior point stalls, and the
    solve says INACCURATE (never OPTIMAL) with the finite iterate it had."""
    prog, *_ = make_program(seed=0)
    real = torch.linalg.cholesky_ex
    calls = {"n": 0}

    def failing_after_start(M, **kwargs):
        calls["n"] += 1
        L, info = real(M, **kwargs)
        return (L, info) if calls["n"] == 1 else (L, torch.ones_like(info))

    monkeypatch.setattr(torch.linalg, "cholesky_ex", failing_after_start)
    sol = lc.solve(prog, solver="torch", method="ipm")
    assert sol.status == lc.SolveStatus.INACCURATE and sol.iterations == 1
    assert bool(torch.isfinite(sol.Q).all()) and math.isfinite(sol.objective)


def test_numerical_error_and_failure_are_statuses(monkeypatch):
    prog, *_ = make_program(seed=0)
    real = lc.RestrictedProgram.adjoint
    calls = {"n": 0}

    def poisoned(self, v=None, mu1=None, mu2=None):
        calls["n"] += 1
        out = real(self, v, mu1, mu2)
        return out * float("nan") if calls["n"] > 150 else out

    monkeypatch.setattr(lc.RestrictedProgram, "adjoint", poisoned)
    sol = lc.solve(prog, solver="torch", method="alm", max_iter=5000)
    assert sol.status == lc.SolveStatus.NUMERICAL_ERROR
    assert bool(torch.isfinite(sol.Q).all())
    assert sol.multipliers is None or all(m is None or bool(torch.isfinite(m).all()) for m in sol.multipliers)
    monkeypatch.undo()

    def broken(self):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(lc.RestrictedProgram, "prediction_gram", broken)
    sol = lc.solve(prog, solver="torch", method="ipm")
    assert sol.status == lc.SolveStatus.FAILED and "simulated" in sol.info["error"]


@pytest.mark.parametrize("kwargs, err", [
    (dict(tol=0), ValueError), (dict(tol=2.0), ValueError), (dict(max_iter=0), ValueError),
    (dict(max_iter=1.5), ValueError), (dict(time_limit=0), ValueError),
    (dict(dtype=torch.int32), ValueError), (dict(method="newton"), ValueError),
])
def test_bad_options(kwargs, err):
    prog, *_ = make_program(seed=0, n=20, extra=0)
    with pytest.raises(err):
        lc.solve(prog, solver="torch", **kwargs)


def test_choose_method_by_size():
    small, *_ = make_program(seed=0, n=20, extra=0)
    assert choose_method(small) == "ipm"
    X = torch.randn(3000, 200, dtype=torch.float64)
    net = lc.ParallelReLU(200, 20, 8).double()
    big = lc.RestrictedProgram(X, torch.randn(3000), lc.patterns_of(net, X), 0.1)
    assert choose_method(big) == "alm"


@pytest.mark.parametrize("case", ["depth3-bias", "depth2-bias"])
def test_fused_operators_and_grams(case):
    prog, *_ = make_program(**CASES[case])
    g = torch.Generator().manual_seed(1)
    Q = torch.randn(prog.shape, generator=g, dtype=torch.float64)
    pred, R1, R2 = prog.forward(Q)
    S1, S2 = prog.cone_rows(Q)
    assert torch.allclose(pred, prog.predict(Q), atol=1e-12) and torch.allclose(R1, S1, atol=1e-12)
    v = torch.randn(prog.n, generator=g, dtype=torch.float64)
    mu1 = torch.rand(prog.P, prog.n, prog.m, generator=g, dtype=torch.float64)
    mu2 = torch.rand(prog.P, prog.n, generator=g, dtype=torch.float64) if prog.depth == 3 else None
    if prog.depth == 3:
        assert torch.allclose(R2, S2, atol=1e-12)
    ref = prog.predict_adjoint(v) + prog.cone_adjoint(mu1, mu2)
    assert torch.allclose(prog.adjoint(v, mu1, mu2), ref, atol=1e-10)
    A = torch.as_tensor(prog.prediction_matrix().toarray())
    G = torch.as_tensor(prog.cone_matrix().toarray())
    assert torch.allclose(prog.prediction_gram(), A.T @ A, atol=1e-10)
    w = mu1.reshape(-1) if mu2 is None else torch.cat([mu1.reshape(-1), mu2.reshape(-1)])
    assert torch.allclose(torch.block_diag(*prog.cone_gram(mu1, mu2)), G.T @ (w[:, None] * G), atol=1e-10)


# ---- Fashion-MNIST loader ------------------------------------------------------------------
def _write_idx(path, array, compress):
    array = np.asarray(array, dtype=np.uint8)
    data = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


@pytest.mark.parametrize("compress", [True, False])
def test_loader_on_synthetic_idx(tmp_path, compress):
    rng = np.random.default_rng(0)
    images = {"train": rng.integers(0, 256, (30, 28, 28)), "t10k": rng.integers(0, 256, (10, 28, 28))}
    labels = {"train": np.arange(30) % 10, "t10k": np.arange(10)}
    for split in ("train", "t10k"):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte", images[split], compress)
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte", labels[split], compress)
    assert available(tmp_path)
    ds = load_fashion_mnist(tmp_path, scaling="unit")
    assert ds.X_train.shape == (30, 784) and ds.X_test.shape == (10, 784)
    assert torch.allclose(ds.X_train[3], torch.as_tensor(images["train"][3].reshape(-1) / 255.0, dtype=torch.float32))
    assert ds.labels_train.tolist() == labels["train"].tolist()
    std = load_fashion_mnist(tmp_path)
    assert float(std.X_train.mean(dim=0).abs().max()) < 1e-5
    assert torch.equal(std.targets(2), (std.labels_train == 2).float())
    assert std.targets().shape == (30, 10)
    sub = std.subsample(10, 5, seed=0)
    assert sub.X_train.shape == (10, 784) and sorted(sub.labels_train.tolist()) == list(range(10))
    with pytest.raises(ValueError):
        std.subsample(31)
    with pytest.raises(ValueError):
        std.targets(10)


def test_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path)
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05abc")
    with pytest.raises(ValueError, match="shape"):
        read_idx(bad)
    (tmp_path / "junk").write_bytes(b"hello world")
    with pytest.raises(ValueError, match="not an IDX"):
        read_idx(tmp_path / "junk")
    with pytest.raises(ValueError, match="scaling"):
        load_fashion_mnist(tmp_path, scaling="zscore")


@pytest.mark.skipif(not available(), reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist_subsample_solve():
    ds = load_fashion_mnist()
    assert ds.X_train.shape == (60000, 784) and ds.X_test.shape == (10000, 784)
    assert sorted(torch.bincount(ds.labels_train).tolist()) == [6000] * 10
    sub = ds.subsample(40, 20, seed=0)
    # a small restricted program on real rows (first 8 pixels' worth of PCA would change the
    # data; keep real pixels but few of them)
    X = sub.X_train[:, ::98].double()
    y = sub.targets(0).double()
    net = lc.ParallelReLU(X.shape[1], 2, 3, bias=True).double()
    prog = lc.RestrictedProgram(X, y, lc.patterns_of(net, X), 0.05)
    ref = lc.solve(prog, solver="clarabel")
    sol = lc.solve(prog, solver="torch")
    assert sol.is_optimal and abs(sol.objective - ref.objective) <= 1e-5 * ref.objective


@pytest.mark.slow
def test_alm_on_fashion_subsample_improves_on_its_warm_start():
    if not available():
        pytest.skip("Fashion-MNIST not installed")
    ds = load_fashion_mnist().subsample(2000, 100, seed=0)
    X, y = ds.X_train.double(), ds.targets(0).double()
    net = lc.ParallelReLU(784, 10, 4, bias=True).double()
    prog = lc.RestrictedProgram(X, y, lc.patterns_of(net, X), 1.0)
    sol = lc.solve(prog, solver="torch", method="alm", tol=1e-2, max_iter=400, warm_start=net)
    assert sol.status in (lc.SolveStatus.OPTIMAL, lc.SolveStatus.ITERATION_LIMIT)
    assert sol.objective <= lc.objective(net, X, y, 1.0) + 1e-6


@pytest.mark.parametrize("case", ["depth3-bias", "depth2-bias"])
def test_low_rank_newton_solves_the_dense_system(case):
    """The Woodbury solve of M = A^T A + B (B block diagonal per pattern: G^T diag(w) G on q_p,
    the second-order cone scalings on (t_pj, q_pj)) against M formed densely and solved by LU."""
    from lightning_convex.solvers.torch_backend.newton import LowRankNewton

    prog, *_ = make_program(**CASES[case])
    wp = prog.with_dtype(torch.float64)
    P, m, d = wp.shape
    N, Gn, k = wp.num_variables, P * m, d + 1
    g = torch.Generator().manual_seed(0)
    w1 = torch.rand(P, wp.n, m, generator=g, dtype=torch.float64) * 10.0 ** torch.randint(-4, 4, (P, wp.n, m), generator=g)
    w2 = torch.rand(P, wp.n, generator=g, dtype=torch.float64) if wp.depth == 3 else None
    R = torch.randn(Gn, k, k, generator=g, dtype=torch.float64)
    Winv2 = R @ R.transpose(1, 2) + 1e-3 * torch.eye(k, dtype=torch.float64)
    A = torch.as_tensor(wp.prediction_matrix().toarray())
    solve = LowRankNewton(wp, A).factor(wp.cone_gram(w1, w2), Winv2, reg_rel=0.0)
    # M densely, index by index (independent of the block bookkeeping under test)
    M = torch.zeros(N + Gn, N + Gn, dtype=torch.float64)
    M[:N, :N] = A.T @ A
    M[:N, :N] += torch.block_diag(*wp.cone_gram(w1, w2))
    for p in range(P):
        for j in range(m):
            idx = torch.cat([torch.tensor([N + p * m + j]), (p * m + j) * d + torch.arange(d)])
            M[idx[:, None], idx[None, :]] += Winv2[p * m + j]
    rhs = torch.randn(N + Gn, generator=g, dtype=torch.float64)
    x = solve(rhs)
    expected = torch.linalg.solve(M, rhs)
    assert torch.allclose(x, expected, rtol=1e-8, atol=1e-10 * float(expected.abs().max()))


def test_crossover_is_what_makes_the_interior_point_exact():
    """On a random network's program the interior point alone stops near a 1e-6 certified gap; with
    the crossover (default) it certifies far below, and its objective matches the CVXPY
    reference."""
    from conftest import reference_optimum

    prog, _, X, y = make_program(seed=4, n=50, d=4, K=6, m=4, extra=0)
    ref = reference_optimum(X, y, prog.patterns, prog.beta)
    plain = lc.solve(prog, solver="torch", method="ipm", crossover=False)
    crossed = lc.solve(prog, solver="torch", method="ipm")
    assert crossed.status == lc.SolveStatus.OPTIMAL and crossed.info.get("crossover") is True
    assert abs(crossed.objective - ref) <= 1e-8 * ref
    assert crossed.info["gap"] < plain.info["gap"]
