"""Shared fixtures and the independent reference of tests/hybrid_reference.py (numpy J and a
CVXPY model of the restricted program, no code from lightning_convex) under the names the test
modules import."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import hybrid_reference as ref

torch.set_num_threads(1)

UCI_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "uci"

numpy_forward = ref.forward
numpy_objective = ref.objective


def reference_optimum(X, y, patterns, beta, bias=None):
    """OPT(S) of MATH.md section 3 for a PatternSet S (``hybrid_reference.restricted_optimum``).

    ``bias`` defaults to ``patterns.bias`` (then a constant-1 column is appended to X).
    """
    if bias is None:
        bias = bool(patterns.bias)
    return ref.restricted_optimum(X, y, beta, *ref.pattern_arrays(patterns), bias)[0]


def params_of(net):
    """(W1, w2 or None, w3) as float64 numpy."""
    return ref.parameters(net)[:3]


@pytest.fixture
def uci_dir():
    if not UCI_DIR.is_dir():
        pytest.skip("../shared/data/uci not present")
    return UCI_DIR
