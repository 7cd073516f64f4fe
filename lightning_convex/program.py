"""The convex program restricted to a pattern set S (MATH.md section 3, Theorem 1, Remark 3).

    minimize  1/2 || A Q - y ||^2 + beta * sum_{p,j} ||q_pj||_2          (A Q = sum_p D2_p sum_j D1_pj X q_pj)
    s.t.      s_pj * (2 D1_pj - 1) * (X q_pj) >= 0                  for all p, j   (first-layer rows)
              sig_p * (2 D2_p - 1) * sum_j D1_pj * (X q_pj) >= 0      for all p      (second-layer rows)

The variable is Q of shape (P, m, d'), q_pj = Q[p, j]. Written G Q >= 0, the cone rows come in two
blocks: ``mu1``-rows of shape (P, n, m) and ``mu2``-rows of shape (P, n) (absent for depth 2, where
they are implied by the first-layer rows). :class:`RestrictedProgram` provides the operators
matrix-free on the pattern set's device (A, A^T, G, G^T, objective, violation) and, for CPU
solvers, the same operators as scipy sparse matrices with the flattening
``vec(Q)[(p*m + j)*d' + k] = Q[p, j, k]`` and cone-row order ``(p, i, j)`` then ``(p, i)``.
Every solver backend works from these; none re-derives the math.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import scipy.sparse as sp
import torch

from ._checks import check_beta
from .patterns.set import PatternSet
from .rows import ENTRY_CHUNK, Rows


def row_signs(D1: torch.Tensor, D2: Optional[torch.Tensor], s: torch.Tensor, sig: torch.Tensor, dtype):
    """The cone-row signs of c patterns on k rows (all rows, or rows chosen per pattern).

    ``D1`` bool (c, k, m), ``D2`` bool (c, k) or None, ``s`` (c, m), ``sig`` (c,). Returns
    (D1 as float, S1 = s (2 D1 - 1) (c, k, m), S2 = sig (2 D2 - 1) (c, k) or None).
    """
    D1f = D1.to(dtype)
    S1 = s.to(dtype)[:, None, :] * (2 * D1f - 1)
    if D2 is None:
        return D1f, S1, None
    return D1f, S1, sig.to(dtype)[:, None] * (2 * D2.to(dtype) - 1)


def row_weights(D1f, S1, S2, mu1, mu2):
    """G^T mu in row form, S1 mu1 + S2 D1 mu2 (c, k, m): its product with the rows is G^T mu."""
    W = S1 * mu1
    if S2 is not None and mu2 is not None:
        W = W + (S2 * mu2)[:, :, None] * D1f
    return W


class RestrictedProgram:
    """The restricted convex program over ``patterns`` for data (X, y) and weight ``beta``.

    Args:
        X: (n, d) data without the bias column (it is appended when ``patterns.bias``), or a
            :class:`~lightning_convex.rows.Rows` prepared with the patterns' bias.
        y: (n,) targets (may be ``None`` when ``X`` is a Rows that holds them).
        patterns: a non-empty :class:`PatternSet` over the same n rows.
        beta: the regularization weight (> 0).
        dtype: working precision of the operators (float64 by default; certificates always
            finish in float64).
    """

    def __init__(self, X, y, patterns: PatternSet, beta, dtype=torch.float64) -> None:
        if not isinstance(patterns, PatternSet):
            raise TypeError(f"patterns must be a PatternSet, got {type(patterns).__name__}")
        if len(patterns) == 0:
            raise ValueError("the pattern set is empty: the restricted program has no variables")
        rows = Rows.prepare(X, y, bias=patterns.bias, device=patterns.device, dtype=dtype)
        if rows.y is None:
            raise ValueError("the restricted program needs the targets y")
        if rows.n != patterns.n:
            raise ValueError(f"X has {rows.n} rows but the patterns were read on {patterns.n} rows")
        self.rows = rows
        self.beta = check_beta(beta)
        self.patterns = patterns
        self.dtype = dtype

    def with_dtype(self, dtype) -> "RestrictedProgram":
        """The same program with its operators in another precision (``self`` when unchanged)."""
        if dtype == self.dtype:
            return self
        return RestrictedProgram(self.rows.to(dtype=dtype), None, self.patterns, self.beta, dtype=dtype)

    @property
    def features(self) -> torch.Tensor:
        """(n, d') the first layer's input: X with the bias column when ``bias``."""
        return self.rows.features

    @property
    def y(self) -> torch.Tensor:
        return self.rows.y

    @property
    def in_features(self) -> int:
        """d, the data's own columns (without the bias column)."""
        return self.rows.in_features

    # -- sizes -------------------------------------------------------------------------------
    @property
    def n(self) -> int:
        return self.rows.n

    @property
    def d(self) -> int:
        """d' (the bias column included): the length of each q_pj."""
        return self.rows.feature_dim

    @property
    def m(self) -> int:
        return self.patterns.hidden

    @property
    def P(self) -> int:
        return len(self.patterns)

    @property
    def depth(self) -> int:
        return self.patterns.depth

    @property
    def bias(self) -> bool:
        return self.patterns.bias

    @property
    def device(self) -> torch.device:
        return self.rows.device

    @property
    def shape(self) -> Tuple[int, int, int]:
        """The shape (P, m, d') of the variable Q."""
        return (self.P, self.m, self.d)

    @property
    def num_variables(self) -> int:
        return self.P * self.m * self.d

    @property
    def num_cone_rows(self) -> int:
        return self.P * self.n * self.m + (self.P * self.n if self.depth == 3 else 0)

    def zeros(self) -> torch.Tensor:
        """Q = 0, always feasible."""
        return torch.zeros(self.shape, dtype=self.dtype, device=self.device)

    def _pattern_chunks(self):
        step = max(1, ENTRY_CHUNK // max(1, self.n * self.m))
        for start in range(0, self.P, step):
            yield slice(start, start + step)

    def _signs(self, sl):
        """First-layer row signs s_pj (2 D1_pj - 1), (c, n, m), and second-layer sig_p (2 D2_p - 1)."""
        pats = self.patterns
        return row_signs(pats.D1[sl], None if pats.D2 is None else pats.D2[sl], pats.s[sl], pats.sig[sl],
                         self.dtype)

    def check_variable(self, Q) -> torch.Tensor:
        Q = torch.as_tensor(Q, device=self.device).to(self.dtype)
        if tuple(Q.shape) != self.shape:
            raise ValueError(f"Q must have shape {self.shape}, got {tuple(Q.shape)}")
        return Q

    # -- prediction operator A and its adjoint -----------------------------------------------
    def predict(self, Q) -> torch.Tensor:
        """A Q = sum_p D2_p * sum_j D1_pj * (X q_pj), shape (n,)."""
        return self.pattern_predictions(Q).sum(dim=0)

    def pattern_predictions(self, Q) -> torch.Tensor:
        """Each pattern's share of A Q: D2_p * sum_j D1_pj * (X q_pj), shape (P, n)."""
        Q = self.check_variable(Q)
        out = torch.empty(self.P, self.n, dtype=self.dtype, device=self.device)
        for sl in self._pattern_chunks():
            Z = torch.einsum("nd,pmd->pnm", self.features, Q[sl])
            out[sl] = (Z * self._mask(sl)).sum(dim=2)
        return out

    def _mask(self, sl) -> torch.Tensor:
        pats = self.patterns
        if pats.D2 is None:
            return pats.D1[sl].to(self.dtype)
        return (pats.D1[sl] & pats.D2[sl, :, None]).to(self.dtype)

    def predict_adjoint(self, v) -> torch.Tensor:
        """A^T v: for each (p, j), X^T (D2_p * D1_pj * v); shape (P, m, d')."""
        v = torch.as_tensor(v, device=self.device).to(self.dtype)
        out = torch.empty(self.shape, dtype=self.dtype, device=self.device)
        for sl in self._pattern_chunks():
            out[sl] = torch.einsum("nd,pnm->pmd", self.features, self._mask(sl) * v[None, :, None])
        return out

    # -- cone rows G and their adjoint -------------------------------------------------------
    def cone_rows(self, Q) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """G Q as (first-layer rows (P, n, m), second-layer rows (P, n) or None); feasible iff >= 0."""
        Q = self.check_variable(Q)
        R1 = torch.empty(self.P, self.n, self.m, dtype=self.dtype, device=self.device)
        R2 = None if self.depth == 2 else torch.empty(self.P, self.n, dtype=self.dtype, device=self.device)
        for sl in self._pattern_chunks():
            Z = torch.einsum("nd,pmd->pnm", self.features, Q[sl])
            D1, S1, S2 = self._signs(sl)
            R1[sl] = S1 * Z
            if R2 is not None:
                R2[sl] = S2 * (D1 * Z).sum(dim=2)
        return R1, R2

    def cone_adjoint(self, mu1, mu2=None) -> torch.Tensor:
        """G^T mu: X^T ( s_pj (2D1_pj - 1) mu1_pj + sig_p (2D2_p - 1) D1_pj mu2_p ), shape (P, m, d')."""
        mu1 = torch.as_tensor(mu1, device=self.device).to(self.dtype)
        out = torch.empty(self.shape, dtype=self.dtype, device=self.device)
        for sl in self._pattern_chunks():
            D1, S1, S2 = self._signs(sl)
            mu2c = None if mu2 is None else torch.as_tensor(mu2, device=self.device).to(self.dtype)[sl]
            W = row_weights(D1, S1, S2, mu1[sl], mu2c)
            out[sl] = torch.einsum("nd,pnm->pmd", self.features, W)
        return out

    # -- fused operators for first-order solvers --------------------------------------------
    # A and G share the product X q_pj, so a first-order method that needs both pays one
    # (n x d') x (d' x P m) product per pass instead of two; the same holds for A^T v + G^T mu.
    def forward(self, Q, out1: Optional[torch.Tensor] = None, out2: Optional[torch.Tensor] = None):
        """(A Q (n,), G Q as (P, n, m) and (P, n) or None) from one product X q_pj per chunk.

        Equal to ``(predict(Q), *cone_rows(Q))``. ``out1`` / ``out2`` are optional preallocated
        buffers for the two blocks of cone rows (a solver iterating at large n reuses them).
        """
        Q = self.check_variable(Q)
        pred = torch.zeros(self.n, dtype=self.dtype, device=self.device)
        R1 = out1 if out1 is not None else torch.empty(
            self.P, self.n, self.m, dtype=self.dtype, device=self.device)
        R2 = None
        if self.depth == 3:
            R2 = out2 if out2 is not None else torch.empty(
                self.P, self.n, dtype=self.dtype, device=self.device)
        for sl in self._pattern_chunks():
            Z = torch.einsum("nd,pmd->pnm", self.features, Q[sl])
            D1, S1, S2 = self._signs(sl)
            pred += (Z * self._mask(sl)).sum(dim=(0, 2))
            if R2 is not None:
                R2[sl] = S2 * (D1 * Z).sum(dim=2)
            torch.mul(S1, Z, out=R1[sl])
        return pred, R1, R2

    def adjoint(self, v=None, mu1=None, mu2=None) -> torch.Tensor:
        """A^T v + G^T mu, shape (P, m, d'), from one product X^T W per chunk.

        Equal to ``predict_adjoint(v) + cone_adjoint(mu1, mu2)``; any argument may be ``None``
        (a zero term).
        """
        as_t = lambda t: None if t is None else torch.as_tensor(t, device=self.device).to(self.dtype)  # noqa: E731
        v, mu1, mu2 = as_t(v), as_t(mu1), as_t(mu2)
        out = torch.zeros(self.shape, dtype=self.dtype, device=self.device)
        for sl in self._pattern_chunks():
            D1, S1, S2 = self._signs(sl)
            W = None
            if v is not None:
                W = self._mask(sl) * v[None, :, None]
            if mu1 is not None:
                W = S1 * mu1[sl] if W is None else W.addcmul_(S1, mu1[sl])
            if S2 is not None and mu2 is not None:
                W2 = (S2 * mu2[sl])[:, :, None] * D1
                W = W2 if W is None else W.add_(W2)
            if W is not None:
                out[sl] = torch.einsum("nd,pnm->pmd", self.features, W)
        return out

    # -- dense Gram matrices for second-order solvers on small programs ----------------------
    def _row_chunks(self, width: int):
        step = max(1, ENTRY_CHUNK // max(1, width))
        for start in range(0, self.n, step):
            yield slice(start, start + step)

    def prediction_gram(self) -> torch.Tensor:
        """A^T A as a dense (N, N) tensor on the program's device (N = P*m*d', vec(Q) order).

        Block ((p,j), (p',k)) is X^T diag(D2_p D1_pj D2_p' D1_p'k) X. Costs n N^2 and N^2 memory:
        meant for small programs (an interior-point Newton system), built in row chunks.
        """
        N = self.num_variables
        out = torch.zeros(N, N, dtype=self.dtype, device=self.device)
        full = slice(0, self.P)
        for rows in self._row_chunks(N):
            mask = self._mask(full)[:, rows, :]  # (P, r, m)
            Ac = (mask.permute(1, 0, 2)[:, :, :, None] * self.features[rows, None, None, :]).reshape(-1, N)
            out.addmm_(Ac.T, Ac)
        return out

    def cone_gram(self, w1, w2=None) -> torch.Tensor:
        """G^T diag(w) G for row weights w1 (P, n, m) and w2 (P, n), as (P, m d', m d') blocks.

        G^T diag(w) G is block diagonal over patterns (each cone row touches one pattern), and the
        row signs square away: block p, sub-block (j, k) is
        X^T diag(w1_pj [j == k] + w2_p D1_pj D1_pk) X.
        """
        P, m, d = self.shape
        w1 = torch.as_tensor(w1, device=self.device).to(self.dtype)
        out = torch.zeros(P, m, d, m, d, dtype=self.dtype, device=self.device)
        diag = out.diagonal(dim1=1, dim2=3)  # (P, d, d, m) view of the (j, j) sub-blocks
        for rows in self._row_chunks(P * m * d):
            X = self.features[rows]
            diag += torch.einsum("pnj,nd,ne->pdej", w1[:, rows, :], X, X)
            if self.depth == 3 and w2 is not None:
                w2c = torch.as_tensor(w2, device=self.device).to(self.dtype)[:, rows]
                B = self.patterns.D1[:, rows, :].to(self.dtype)[..., None] * X[None, :, None, :]  # (P, r, m, d)
                B = B.reshape(P, -1, m * d)
                out += torch.bmm(B.transpose(1, 2), B * w2c[:, :, None]).view(P, m, d, m, d)
        return out.view(P, m * d, m * d)

    def constraint_violation(self, Q) -> float:
        """max(0, -min(G Q)): the largest violation of a cone row, in prediction units."""
        R1, R2 = self.cone_rows(Q)
        worst = float(R1.min()) if R1.numel() else 0.0
        if R2 is not None and R2.numel():
            worst = min(worst, float(R2.min()))
        return max(0.0, -worst)

    # -- objective ---------------------------------------------------------------------------
    def group_norms(self, Q) -> torch.Tensor:
        """||q_pj||_2, shape (P, m)."""
        return self.check_variable(Q).norm(dim=2)

    def residual(self, Q) -> torch.Tensor:
        """v = y - A Q: the dual point at the optimum (MATH.md section 5)."""
        return self.y - self.predict(Q)

    def objective(self, Q) -> float:
        """1/2 ||A Q - y||^2 + beta sum ||q_pj||, in float64."""
        Q = self.check_variable(Q)
        r = self.residual(Q).double()
        return float(0.5 * r.square().sum() + self.beta * Q.double().norm(dim=2).sum())

    # -- explicit matrices for CPU solvers ---------------------------------------------------
    def flatten(self, Q) -> np.ndarray:
        """vec(Q) as a float64 numpy vector (C order over (p, j, k))."""
        return self.check_variable(Q).detach().double().cpu().numpy().reshape(-1)

    def unflatten(self, q) -> torch.Tensor:
        """Inverse of :meth:`flatten`, on the program's device."""
        q = np.asarray(q, dtype=np.float64).reshape(self.shape)
        return torch.as_tensor(q, device=self.device).to(self.dtype)

    def _numpy_parts(self):
        X = self.features.double().cpu().numpy()
        pats = self.patterns
        D1 = pats.D1.cpu().numpy()
        D2 = None if pats.D2 is None else pats.D2.cpu().numpy()
        s = pats.s.cpu().numpy().astype(np.float64)
        sig = pats.sig.cpu().numpy().astype(np.float64)
        return X, D1, D2, s, sig

    def _block_indices(self):
        P, n, m, d = self.P, self.n, self.m, self.d
        cols = (np.arange(P)[:, None, None, None] * m + np.arange(m)[None, None, :, None]) * d \
            + np.arange(d)[None, None, None, :]
        return np.broadcast_to(cols, (P, n, m, d))

    def prediction_matrix(self) -> sp.csr_matrix:
        """A as a scipy CSR matrix of shape (n, P*m*d')."""
        X, D1, D2, _, _ = self._numpy_parts()
        mask = D1 if D2 is None else D1 & D2[:, :, None]
        P, n, m, d = self.P, self.n, self.m, self.d
        vals = mask[..., None] * X[None, :, None, :]
        rows = np.broadcast_to(np.arange(n)[None, :, None, None], (P, n, m, d))
        keep = np.broadcast_to(mask[..., None], vals.shape) & (vals != 0)
        A = sp.csr_matrix(
            (vals[keep], (rows[keep], self._block_indices()[keep])), shape=(n, self.num_variables)
        )
        return A

    def cone_matrix(self) -> sp.csr_matrix:
        """G as a scipy CSR matrix of shape (num_cone_rows, P*m*d'); the program needs G vec(Q) >= 0."""
        X, D1, D2, s, sig = self._numpy_parts()
        P, n, m, d = self.P, self.n, self.m, self.d
        cols = self._block_indices()
        S1 = s[:, None, :] * (2.0 * D1 - 1.0)  # (P, n, m)
        vals1 = S1[..., None] * X[None, :, None, :]
        rows1 = np.broadcast_to(np.arange(P * n * m).reshape(P, n, m)[..., None], vals1.shape)
        keep1 = vals1 != 0
        parts_r, parts_c, parts_v = [rows1[keep1]], [cols[keep1]], [vals1[keep1]]
        if D2 is not None:
            S2 = sig[:, None] * (2.0 * D2 - 1.0)  # (P, n)
            vals2 = (S2[:, :, None] * D1)[..., None] * X[None, :, None, :]
            rows2 = np.broadcast_to(
                (P * n * m + np.arange(P * n).reshape(P, n))[:, :, None, None], vals2.shape
            )
            keep2 = vals2 != 0
            parts_r.append(rows2[keep2])
            parts_c.append(cols[keep2])
            parts_v.append(vals2[keep2])
        G = sp.csr_matrix(
            (np.concatenate(parts_v), (np.concatenate(parts_r), np.concatenate(parts_c))),
            shape=(self.num_cone_rows, self.num_variables),
        )
        return G

    def split_multipliers(self, mu) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """A flat vector of cone-row multipliers (the order of :meth:`cone_matrix`) as (mu1, mu2)."""
        mu = torch.as_tensor(np.asarray(mu, dtype=np.float64), device=self.device).to(self.dtype)
        k = self.P * self.n * self.m
        mu1 = mu[:k].reshape(self.P, self.n, self.m)
        mu2 = mu[k:].reshape(self.P, self.n) if self.depth == 3 else None
        return mu1, mu2

    def __repr__(self) -> str:
        return (
            f"RestrictedProgram(n={self.n}, d'={self.d}, P={self.P}, m={self.m}, depth={self.depth}, "
            f"beta={self.beta}, device={self.device})"
        )
