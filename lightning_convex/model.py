"""The parallel ReLU network of Ergen & Pilanci (ICML 2021), MATH.md section 1.

Depth 3 (the paper's three-layer sub-networks), K branches of width m::

    f(X) = sum_k w3_k * relu( relu(X W1_k) w2_k )

Depth 2 (one neuron per branch, the two-layer network of Pilanci & Ergen 2020)::

    f(X) = sum_k w3_k * relu(X u_k),       u_k = W1[k, :, 0]

With ``bias=True`` a constant-1 column is appended to X (last column) before the first layer, so
``W1`` has ``in_features + 1`` rows; every other part of the library (patterns, programs,
reconstruction) appends the same column.
"""

from __future__ import annotations

import math
import warnings
from typing import Optional

import torch
from torch import nn

from ._checks import check_architecture, check_int, check_regularization
from .mapping import branch_path_norms, rebuild_branches
from .rows import Rows, add_bias_column


class ParallelReLU(nn.Module):
    """K parallel ReLU sub-networks summed into one scalar output.

    Args:
        in_features: d, the number of input columns (without the bias column).
        hidden: m, the width of each branch's first layer. Must be 1 for ``depth=2``.
        branches: K, the number of parallel branches.
        depth: 3 (``W1`` (K, d, m), ``w2`` (K, m), ``w3`` (K,)) or 2 (``W1`` (K, d, 1),
            ``w3`` (K,), and ``w2`` is ``None``).
        bias: append a constant-1 column to X, so ``W1`` has d + 1 rows.
        regularization: ``"path"``: R = sum_k sum_j ||W1_k[:, j]|| |w2_kj| |w3_k| (depth 2:
            sum_k ||u_k|| |w3_k|); ``"paper"`` (eq. 4): R = 1/2 sum_k (||w2_k||^2 + w3_k^2) with
            ||W1_k||_F <= 1 kept by :meth:`project_` (depth 2: 1/2 sum_k (||u_k||^2 + w3_k^2),
            no constraint). Both give the same convex program (MATH.md section 3).

    Parameters are initialised like ``nn.Linear`` (uniform in +-1/sqrt(fan_in) per layer) and,
    in the paper form, projected onto ||W1_k||_F <= 1.
    """

    def __init__(
        self,
        in_features: int,
        hidden: int,
        branches: int,
        depth: int = 3,
        bias: bool = False,
        regularization: str = "path",
    ) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("hidden", hidden), ("branches", branches)):
            check_int(name, value, minimum=1)
        check_architecture(depth, hidden)
        self.in_features = in_features
        self.hidden = hidden
        self.branches = branches
        self.depth = depth
        self.bias = bool(bias)
        self.regularization = check_regularization(regularization)
        rows = in_features + int(self.bias)
        self.W1 = nn.Parameter(torch.empty(branches, rows, hidden))
        if depth == 3:
            self.w2 = nn.Parameter(torch.empty(branches, hidden))
        else:
            self.register_parameter("w2", None)
        self.w3 = nn.Parameter(torch.empty(branches))
        self.reset_parameters()

    @property
    def feature_dim(self) -> int:
        """d' = d + 1 with a bias column, else d: the length of each q_pj."""
        return self.in_features + int(self.bias)

    def reset_parameters(self) -> None:
        """Uniform(+-1/sqrt(fan_in)) per layer; the paper form then projects W1."""
        with torch.no_grad():
            bound = 1.0 / math.sqrt(self.feature_dim)
            self.W1.uniform_(-bound, bound)
            if self.w2 is not None:
                self.w2.uniform_(-1.0 / math.sqrt(self.hidden), 1.0 / math.sqrt(self.hidden))
            self.w3.uniform_(-1.0 / math.sqrt(self.branches), 1.0 / math.sqrt(self.branches))
        self.project_()

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, hidden={self.hidden}, branches={self.branches}, "
            f"depth={self.depth}, bias={self.bias}, regularization={self.regularization!r}"
        )

    def features(self, X: torch.Tensor) -> torch.Tensor:
        """X with the bias column appended when ``bias=True``: the rows the first layer sees.

        X must be a tensor of the parameters' dtype and device: a forward pass converts nothing
        silently (convert with ``X.to(net.W1)``, or use :func:`lightning_convex.predict`, which
        accepts any numeric input and evaluates in float64).
        """
        if not isinstance(X, torch.Tensor):
            raise TypeError(f"X must be a torch.Tensor, got {type(X).__name__}; convert it with "
                            f"torch.as_tensor(X, dtype={self.W1.dtype})")
        if X.dim() != 2 or X.shape[1] != self.in_features:
            raise ValueError(
                f"expected X of shape (n, {self.in_features}), got {tuple(X.shape)}"
            )
        if X.dtype != self.W1.dtype:
            raise TypeError(f"X is {X.dtype} but the network's parameters are {self.W1.dtype}: convert "
                            f"X with X.to({self.W1.dtype}) (or the network with .to(X.dtype))")
        if X.device != self.W1.device:
            raise ValueError(f"X is on {X.device} but the network is on {self.W1.device}")
        return add_bias_column(X) if self.bias else X

    def second_layer(self) -> torch.Tensor:
        """w2 (K, m); for depth 2 a fixed (K, 1) tensor of ones, so the formulas stay uniform."""
        if self.w2 is not None:
            return self.w2
        return torch.ones(self.branches, 1, dtype=self.W1.dtype, device=self.W1.device)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """f(X), shape (n,)."""
        Xf = self.features(X)
        return branch_outputs(Xf, self.W1, self.w2, self.w3).sum(dim=0)

    def regularizer(self) -> torch.Tensor:
        """R(theta) in this network's regularization form (MATH.md section 1)."""
        return regularizer(self.W1, self.w2, self.w3, self.regularization)

    @torch.no_grad()
    def project_(self) -> "ParallelReLU":
        """Paper form, depth 3: rescale each W1_k onto ||W1_k||_F <= 1. Otherwise a no-op."""
        if self.regularization == "paper" and self.depth == 3:
            norms = self.W1.flatten(1).norm(dim=1).clamp_min(1.0)
            self.W1.div_(norms[:, None, None])
        return self

    @torch.no_grad()
    def write_branches_(self, index, W1: torch.Tensor, w2: Optional[torch.Tensor], w3: torch.Tensor) -> None:
        """Branches ``index`` := (W1 (B, d', m), w2 (B, m) or None, w3 (B,)), converted to the
        parameters' device and dtype; the other branches keep their values."""
        index = torch.as_tensor(index, dtype=torch.long, device=self.W1.device)
        self.W1[index] = W1.to(self.W1)
        self.w3[index] = w3.to(self.w3)
        if self.w2 is not None:
            self.w2[index] = w2.to(self.w2)

    @torch.no_grad()
    def load_solution_(self, solution, rtol: float = 1e-9, allow_inexact: bool = False) -> "ParallelReLU":
        """Write a :class:`~lightning_convex.Solution` into the K branches in place (Proposition 1,
        MATH.md section 4) and return the network.

        Nonzero patterns (t_p above ``rtol`` times the largest) fill branches 0, 1, ... in pattern
        order; every spare branch becomes exactly zero (W1, w2, w3 = 0), contributing nothing to
        f or R. Refuses (ValueError, network untouched) a solution whose status is not optimal
        unless ``allow_inexact=True`` (then a rise of J on the program's rows is warned about), a
        solution with more than K nonzero patterns, or one built for another architecture. The
        network's own regularization form decides the scaling.
        """
        if not solution.is_optimal and not allow_inexact:
            raise ValueError(
                f"the solution's status is {solution.status} (not optimal): writing it could raise "
                "the objective. Solve again (a looser tol, more max_iter or time_limit), or pass "
                "allow_inexact=True to write it anyway"
            )
        program = solution.program
        before = None if solution.is_optimal else objective_on_rows(self, program.rows, program.beta)
        self.write_solution_(solution, rtol)
        if before is not None:
            after = objective_on_rows(self, program.rows, program.beta)
            if after > before:
                warnings.warn(f"load_solution_ wrote a {solution.status} solution: J rose from {before:.10g} "
                              f"to {after:.10g} on the program's rows", stacklevel=2)
        return self

    @torch.no_grad()
    def write_solution_(self, solution, rtol: float = 1e-9) -> "ParallelReLU":
        """The writing step of :meth:`load_solution_`, whatever the solution's status."""
        program = solution.program
        expected = (program.in_features, program.m, program.depth, program.bias)
        actual = (self.in_features, self.hidden, self.depth, self.bias)
        if expected != actual:
            raise ValueError(
                f"solution is for (in_features, hidden, depth, bias) = {expected}, network has {actual}"
            )
        active = solution.active_patterns(rtol)
        count = int(active.sum())
        if count > self.branches:
            raise ValueError(
                f"the solution has {count} nonzero patterns but the network has only {self.branches} "
                "branches; keep the largest K patterns and solve again on those"
            )
        idx = torch.nonzero(active).flatten()
        patterns = program.patterns
        Q = solution.Q.double()[idx]
        W1, w2, w3 = rebuild_branches(Q, patterns.s[idx.to(patterns.device)],
                                      patterns.sig[idx.to(patterns.device)], self.depth, self.regularization)
        for param in self.parameters():
            param.zero_()
        self.write_branches_(torch.arange(count), W1, w2, w3)
        return self

    def check_finite_(self) -> "ParallelReLU":
        """Raise ValueError naming the first parameter with NaN or inf entries; return the network."""
        for name, param in self.named_parameters():
            if not bool(torch.isfinite(param).all()):
                raise ValueError(f"the network's parameter {name} contains NaN or inf entries")
        return self


@torch.no_grad()
def objective_on_rows(net: ParallelReLU, rows: Rows, beta: float) -> float:
    """J(theta) = 1/2 ||f(X) - y||^2 + beta R(theta) in float64 on prepared rows holding y
    (MATH.md section 1, sum form); the public entry point is :func:`lightning_convex.objective`."""
    W1, w2, w3 = float64_parameters(net)
    features = rows.features.to(device=W1.device, dtype=torch.float64)
    f = torch.cat([branch_outputs(features[sl], W1, w2, w3).sum(dim=0) for sl in rows.chunks()])
    y = rows.y.to(f)
    return float(0.5 * (f - y).square().sum() + beta * regularizer(W1, w2, w3, net.regularization))


def float64_parameters(net: ParallelReLU):
    """(W1, w2 or None, w3) detached in float64 on the network's device."""
    w2 = None if net.w2 is None else net.w2.detach().double()
    return net.W1.detach().double(), w2, net.w3.detach().double()


def network_rows(net: ParallelReLU, X, y=None) -> Rows:
    """X (and y) checked against the network (type, columns, finiteness) as float64 rows on its
    device, with the network's bias column; a ready :class:`Rows` passes through."""
    if not isinstance(net, ParallelReLU):
        raise TypeError(f"net must be a ParallelReLU, got {type(net).__name__}")
    return Rows.prepare(X, y, bias=net.bias, device=net.W1.device, dtype=torch.float64,
                        in_features=net.in_features)


def branch_outputs(Xf: torch.Tensor, W1: torch.Tensor, w2, w3: torch.Tensor) -> torch.Tensor:
    """Per-branch outputs w3_k relu(relu(Xf W1_k) w2_k), shape (K, n); depth 2 when w2 is None."""
    pre = torch.einsum("nd,kdm->knm", Xf, W1)
    if w2 is None:
        return w3[:, None] * torch.relu(pre[:, :, 0])
    z = torch.einsum("knm,km->kn", torch.relu(pre), w2)
    return w3[:, None] * torch.relu(z)


def regularizer(W1: torch.Tensor, w2, w3: torch.Tensor, regularization: str) -> torch.Tensor:
    """R(theta) for raw parameters (see :class:`ParallelReLU`)."""
    if regularization == "path":
        return branch_path_norms(W1, w2, w3).sum()
    col_norms = W1.norm(dim=1)  # (K, m): ||W1_k[:, j]||
    if w2 is None:
        return 0.5 * (col_norms[:, 0].square().sum() + w3.square().sum())
    return 0.5 * (w2.square().sum() + w3.square().sum())
