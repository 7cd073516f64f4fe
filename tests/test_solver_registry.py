"""The solver registry: status maps cover each backend's own statuses, options are checked, and
``auto`` picks what the declared capabilities and the program's size say."""

from __future__ import annotations

import dataclasses

import clarabel
import cvxpy as cp
import pytest
import torch

import lightning_convex as lc
from lightning_convex import solvers
from lightning_convex.solution import SolveStatus
from lightning_convex.solvers import clarabel_backend, cvxpy_backend, registry


def small_program(seed=0, n=24, d=3, K=3, m=2):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = torch.randn(n, generator=gen, dtype=torch.float64)
    torch.manual_seed(seed)
    net = lc.ParallelReLU(d, m, K, bias=True).double()
    patterns = lc.patterns_of(net, X)
    return lc.RestrictedProgram(X, y, patterns.select(~patterns.is_degenerate()).unique(), 0.1)


def test_clarabel_status_map_covers_every_clarabel_status():
    raw = {name for name in dir(clarabel.SolverStatus) if not name.startswith("_")}
    assert raw == set(clarabel_backend.STATUS_MAP)
    assert all(isinstance(v, SolveStatus) for v in clarabel_backend.STATUS_MAP.values())


def test_cvxpy_status_map_covers_every_cvxpy_status():
    settings = cp.settings
    raw = set(settings.SOLUTION_PRESENT) | set(settings.INF_OR_UNB) | set(settings.ERROR)
    assert raw <= set(cvxpy_backend.STATUS_MAP), raw - set(cvxpy_backend.STATUS_MAP)
    # a limit the caller set is not called an iteration limit: the backend does not say which
    assert cvxpy_backend.STATUS_MAP["user_limit"] == SolveStatus.USER_LIMIT


@pytest.mark.parametrize("options,expected", [
    ({}, SolveStatus.OPTIMAL),
    ({"max_iter": 1}, SolveStatus.ITERATION_LIMIT),
])
def test_clarabel_reports_what_its_table_says(options, expected):
    solution = lc.solve(small_program(), solver="clarabel", **options)
    assert solution.status == expected
    assert clarabel_backend.STATUS_MAP[solution.info["raw_status"]] == expected


@pytest.mark.parametrize("name", ["clarabel", "osqp", "torch", "engine"])
def test_unknown_options_raise(name):
    with pytest.raises(ValueError, match="does not accept option.*'tolerance'"):
        lc.solve(small_program(), solver=name, tolerance=1e-6)


def test_clarabel_refuses_unknown_settings_and_bad_values():
    program = small_program()
    with pytest.raises(ValueError, match="unknown Clarabel setting"):
        lc.solve(program, solver="clarabel", settings={"not_a_setting": 1})
    for bad in ({"max_iter": 0}, {"max_iter": -1}, {"tol": -1.0}, {"tol": float("nan")},
                {"time_limit": -1.0}):
        with pytest.raises(ValueError):
            lc.solve(program, solver="clarabel", **bad)


def test_every_backend_declares_capabilities():
    for name in solvers.available_solvers():
        if name == "auto":
            continue
        backend = solvers.backend(name)
        assert backend.name == name
        assert backend.capabilities.devices
        assert backend.options is None or "tol" in backend.options or name == "cvxpy"


def test_auto_follows_the_declared_capabilities(monkeypatch):
    program = small_program()
    entries = registry.cone_entries(program)
    assert entries == program.P * program.n * (program.m + 1) * program.d
    name, reason = solvers.choose_solver(program)
    assert name == "clarabel" and "on cpu" in reason
    solution = lc.solve(program)
    assert solution.info["auto"].startswith("clarabel")
    # a declared limit below this program's size sends it to the matrix-free backend
    small = dataclasses.replace(solvers.backend("clarabel").capabilities, max_cone_entries=entries - 1)
    monkeypatch.setitem(registry._BACKENDS, "clarabel",
                        dataclasses.replace(solvers.backend("clarabel"), capabilities=small))
    assert solvers.choose_solver(program)[0] == "engine"
    # a backend that does not run on the program's device is skipped
    elsewhere = dataclasses.replace(small, max_cone_entries=None, devices=("cuda",))
    monkeypatch.setitem(registry._BACKENDS, "clarabel",
                        dataclasses.replace(solvers.backend("clarabel"), capabilities=elsewhere))
    assert solvers.choose_solver(program)[0] == "engine"
