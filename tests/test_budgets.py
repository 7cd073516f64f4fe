"""Issue 13, items 2, 3 and 5: what ``auto`` picks and why, time limits on every path, Ctrl-C and
SIGTERM during a solve, and progress output. No timing assertions: limits are checked by what
the solvers report and by what the network ends with (independent J from tests/hybrid_reference.py).
"""

from __future__ import annotations

import io
import os
import signal
import threading

import numpy as np
import pytest
import torch

import lightning_convex as lc
from lightning_convex import monitor, solvers
from lightning_convex.solution import Solution, SolveStatus
from lightning_convex.solvers import clarabel_backend, estimates, registry

import hybrid_reference as ref

BETA = 0.1


def teacher(n=40, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    W = torch.randn(2, d, generator=g, dtype=torch.float64)
    y = torch.relu(X @ W[0]) - 0.5 * torch.relu(X @ W[1]) + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
    return X, y


def network(d=3, K=4, m=3, seed=1):
    torch.manual_seed(seed)
    return lc.ParallelReLU(d, m, K, bias=True).double()


def own_program(net, X, y, beta=BETA):
    patterns = lc.patterns_of(net, X)
    return lc.RestrictedProgram(X, y, patterns.select(~patterns.is_degenerate()).unique(), beta)


def network_J(net, X, y):
    return ref.network_objective(net, X, y, BETA)[0]


def state(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


@pytest.fixture
def restore_signals():
    saved = {s: signal.getsignal(s) for s in monitor.SIGNALS}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


# -- auto ------------------------------------------------------------------------------------------
def test_group_row_counts_match_the_explicit_matrices():
    """c_g counted from the masks equals the rows of A and G with a nonzero in group g's columns
    (Gaussian data: no entry of X is zero, so every masked entry is a nonzero)."""
    X, y = teacher(n=30)
    program = own_program(network(), X, y)
    A_rows = np.asarray(program.prediction_matrix().astype(bool).todense())
    G_rows = np.asarray(program.cone_matrix().astype(bool).todense())
    counts = estimates.group_row_counts(program).numpy()
    d = program.d
    for p in range(program.P):
        for j in range(program.m):
            cols = slice((p * program.m + j) * d, (p * program.m + j + 1) * d)
            expected = A_rows[:, cols].any(axis=1).sum() + G_rows[:, cols].any(axis=1).sum()
            assert counts[p, j] == expected


def test_auto_refuses_clarabel_over_its_memory_estimate_and_builds_nothing(monkeypatch):
    X, y = teacher()
    program = own_program(network(), X, y)
    est = estimates.estimate(program)
    assert est.clarabel_bytes > est.engine_bytes
    # memory for the engine but not for Clarabel (auto keeps half of it as headroom)
    monkeypatch.setattr(estimates, "available_bytes", lambda device: 2.0 * est.engine_bytes + 1.0)
    choice = solvers.choose_solver(program)
    assert choice.name == "engine" and "clarabel would need" in choice.reason

    def no_explicit_rows(*args, **kwargs):
        raise AssertionError("auto built the explicit cone rows")

    monkeypatch.setattr(lc.RestrictedProgram, "cone_matrix", no_explicit_rows)
    solution = lc.solve(program, time_limit=30)
    assert solution.solver == "engine" and solution.info["auto"].startswith("engine")
    assert solution.info["auto_estimate"]["clarabel_bytes"] == pytest.approx(est.clarabel_bytes)
    # nothing fits: refused before anything is allocated
    monkeypatch.setattr(estimates, "available_bytes", lambda device: 1.0)
    with pytest.raises(MemoryError, match="no registered solver fits"):
        lc.solve(program)


def test_auto_keeps_clarabel_off_long_solves(monkeypatch):
    X, y = teacher()
    program = own_program(network(), X, y)
    est = estimates.estimate(program)
    assert solvers.choose_solver(program).name == "clarabel"
    # the caller's time limit below Clarabel's estimate, or the cap below it: the engine
    assert solvers.choose_solver(program, time_limit=0.5 * est.clarabel_seconds).name == "engine"
    monkeypatch.setattr(registry, "CLARABEL_MAX_SECONDS", 0.5 * est.clarabel_seconds)
    choice = solvers.choose_solver(program)
    assert choice.name == "engine" and "clarabel would take" in choice.reason


def test_auto_never_sends_a_cuda_program_to_clarabel(monkeypatch):
    X, y = teacher()
    program = own_program(network(), X, y)

    class OnCuda(lc.RestrictedProgram):
        device = property(lambda self: torch.device("cuda"))

    on_cuda = OnCuda(program.rows, None, program.patterns, BETA)
    monkeypatch.setattr(estimates, "available_bytes", lambda device: 1e12)
    choice = solvers.choose_solver(on_cuda)
    assert choice.name == "engine" and "clarabel does not run on cuda" in choice.reason


# -- time limits -----------------------------------------------------------------------------------
def _spy(monkeypatch, name, seen, status=SolveStatus.OPTIMAL, answer=None, exact=True):
    """Register ``name``: records its options, answers with Clarabel's optimum (or ``answer(program)``)
    under ``status``; it declares ``tol`` and ``time_limit``."""

    def spy(program, tol=1e-9, time_limit=float("inf"), warm_start=None):
        seen.append({"time_limit": time_limit, "tol": tol})
        Q = clarabel_backend.solve_clarabel(program).Q if answer is None else answer(program)
        return Solution.from_variable(program, Q, status=status, seconds=0.0, iterations=1, solver=name,
                                      info={"tol": tol})

    caps = solvers.Capabilities(warm_start=True, exact=exact)
    monkeypatch.setitem(registry._BACKENDS, name, solvers.Backend.from_function(name, spy, caps))


def test_solve_never_runs_unbounded_by_default(monkeypatch):
    seen = []
    _spy(monkeypatch, "spy", seen)
    X, y = teacher()
    program = own_program(network(), X, y)
    lc.solve(program, solver="spy")
    lc.solve(program, solver="spy", time_limit=7.0)
    assert [s["time_limit"] for s in seen] == [registry.DEFAULT_TIME_LIMIT, 7.0]

    def bounded(program, time_limit=30.0):  # a backend's own finite default is kept
        seen.append(time_limit)
        return Solution.from_variable(program, program.zeros(), status=SolveStatus.OPTIMAL, seconds=0.0,
                                      iterations=0, solver="bounded")

    monkeypatch.setitem(registry._BACKENDS, "bounded",
                        solvers.Backend.from_function("bounded", bounded, solvers.Capabilities()))
    lc.solve(program, solver="bounded")
    assert seen[-1] == 30.0


def test_engine_stops_at_its_time_limit_with_its_best_iterate():
    X, y = teacher(n=120, d=5)
    net = network(d=5, K=6, m=4)
    program = own_program(net, X, y, beta=0.01)
    solution = lc.solve(program, solver="engine", time_limit=0.3, tol=1e-9, warm_start=net)
    assert solution.status == SolveStatus.TIME_LIMIT and solution.info["stop"] == "time_limit"
    assert solution.objective <= ref.network_objective(net, X, y, 0.01)[0] * (1 + 1e-9)


def test_rounds_share_one_deadline(monkeypatch):
    """Every solve of the rounds gets what is left of the call's budget as its time_limit."""
    seen = []
    _spy(monkeypatch, "spy", seen)
    X, y = teacher()
    lc.active_set_solve(network(), X, y, BETA, solver="spy", time_limit=50.0)
    limits = [s["time_limit"] for s in seen]
    assert len(limits) >= 2 and all(0 < t <= 50.0 for t in limits)
    assert all(b <= a for a, b in zip(limits, limits[1:]))


def test_a_budget_below_one_solve_changes_nothing_and_says_budget(monkeypatch):
    seen = []
    _spy(monkeypatch, "spy", seen)
    X, y = teacher()
    net = network()
    before = state(net)
    result = lc.active_set_solve(net, X, y, BETA, solver="spy", time_limit=1e-3)
    assert seen == [] and result.stop_reason == "budget" and not result.changed
    assert any("budget reached" in m for m in result.messages)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


@pytest.mark.parametrize("better", [True, False])
def test_a_time_limited_iterate_is_kept_only_when_it_lowers_J(monkeypatch, better):
    """The budget ends inside a solve: its iterate (Clarabel's optimum, or Q = 0) is written only
    when the rebuilt network's J is below the network's."""
    X, y = teacher()
    net = network()
    J0 = network_J(net, X, y)
    zero = lambda program: program.zeros()  # noqa: E731
    _spy(monkeypatch, "limited", [], status=SolveStatus.TIME_LIMIT, answer=None if better else zero)
    program = own_program(net, X, y)
    if not better:
        assert 0.5 * float(program.y.square().sum()) > J0  # Q = 0 is worse than this network
    before = state(net)
    result = lc.active_set_solve(net, X, y, BETA, solver="limited", time_limit=30.0)
    J = network_J(net, X, y)
    assert result.stop_reason == "budget" and result.statuses == ["time_limit"]
    assert any("budget reached" in m for m in result.messages)
    assert J == pytest.approx(result.objective_after, rel=1e-12)
    if better:
        assert result.changed and J < J0
    else:
        assert not result.changed and all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_a_tiny_budget_with_the_engine_never_raises_J():
    X, y = teacher(n=120, d=5)
    net = network(d=5, K=6, m=4)
    J0 = network_J(net, X, y)
    result = lc.active_set_solve(net, X, y, BETA, solver="engine", time_limit=0.7,
                                 solver_options={"tol": 1e-9})
    assert result.stop_reason == "budget" and any("budget reached" in m for m in result.messages)
    assert network_J(net, X, y) <= J0 * (1 + 1e-12)
    assert network_J(net, X, y) == pytest.approx(result.objective_after, rel=1e-12)


# -- interrupts ------------------------------------------------------------------------------------
def raise_on_first_check(signum):
    calls = []

    def callback(record):
        calls.append(record)
        if len(calls) == 1:
            signal.raise_signal(signum)
        return False

    return callback


def test_ctrl_c_stops_an_engine_solve_and_raises_afterwards(restore_signals):
    X, y = teacher(n=120, d=5)
    net = network(d=5, K=6, m=4)
    program = own_program(net, X, y)
    previous = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        lc.solve(program, solver="engine", tol=1e-12, time_limit=60, warm_start=net,
                 callback=raise_on_first_check(signal.SIGINT))
    assert signal.getsignal(signal.SIGINT) is previous


def test_ctrl_c_during_rounds_leaves_the_network_unchanged_or_improved(restore_signals):
    X, y = teacher(n=120, d=5)
    net = network(d=5, K=6, m=4)
    J0 = network_J(net, X, y)
    with pytest.raises(KeyboardInterrupt):
        lc.active_set_solve(net, X, y, BETA, solver="engine", time_limit=60,
                            solver_options={"tol": 1e-12, "callback": raise_on_first_check(signal.SIGINT)})
    assert network_J(net, X, y) <= J0 * (1 + 1e-12)
    lc.objective(net, X, y, BETA)  # the network is whole: finite and usable


def test_sigint_from_another_thread_stops_the_rounds(restore_signals):
    X, y = teacher(n=120, d=5)
    net = network(d=5, K=6, m=4)
    J0 = network_J(net, X, y)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            lc.active_set_solve(net, X, y, BETA, solver="engine", time_limit=60, solver_options={"tol": 1e-12})
    finally:
        timer.cancel()
    assert network_J(net, X, y) <= J0 * (1 + 1e-12)


def test_sigterm_during_a_solve_reaches_the_previous_handler_afterwards(restore_signals):
    received = []
    handler = lambda signum, frame: received.append(signum)  # noqa: E731
    signal.signal(signal.SIGTERM, handler)
    X, y = teacher(n=120, d=5)
    net = network(d=5, K=6, m=4)
    J0 = network_J(net, X, y)
    result = lc.active_set_solve(net, X, y, BETA, solver="engine", time_limit=60,
                                 solver_options={"tol": 1e-12, "callback": raise_on_first_check(signal.SIGTERM)})
    assert received == [signal.SIGTERM]  # once, after the rounds
    assert result.stop_reason == "interrupted"
    assert any("interrupted by SIGTERM" in m for m in result.messages)
    assert network_J(net, X, y) <= J0 * (1 + 1e-12)
    assert network_J(net, X, y) == pytest.approx(result.objective_after, rel=1e-12)
    assert signal.getsignal(signal.SIGTERM) is handler


def test_nested_monitors_share_one_interrupt(restore_signals):
    received = []
    signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    with monitor.Monitor(10.0, progress=False) as outer:
        with monitor.Monitor(5.0, progress=False) as inner:
            signal.raise_signal(signal.SIGTERM)
            assert inner.interrupted == "SIGTERM" and inner.callback({}) is True
            assert inner.remaining() <= outer.remaining()
        assert outer.interrupted == "SIGTERM" and received == []  # the inner one passes nothing on
    assert received == [signal.SIGTERM]


# -- progress --------------------------------------------------------------------------------------
class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("stream_type,progress,expect", [
    (Terminal, True, "frames"), (io.StringIO, True, "line"), (Terminal, False, "nothing"),
    (io.StringIO, False, "nothing")])
def test_progress_output(stream_type, progress, expect):
    stream = stream_type()
    with monitor.Monitor(30.0, description="work", progress=progress, delay=0.0, stream=stream) as watch:
        for k in range(3):
            watch.update(f"step {k}")
    out = stream.getvalue()
    if expect == "nothing":
        assert out == ""
    elif expect == "line":
        assert out.count("\n") == 1 and out.startswith("work: ") and "\r" not in out
    else:
        assert "work" in out and "step" in out and "\r" in out


def test_short_work_stays_silent():
    stream = io.StringIO()
    with monitor.Monitor(30.0, description="work", progress=True, delay=60.0, stream=stream) as watch:
        watch.update("step")
    assert stream.getvalue() == ""


def test_monitor_checks_its_limit():
    for bad in (0, -1.0, float("nan"), True, "10"):
        with pytest.raises(ValueError):
            monitor.Monitor(bad)
