"""The program as numpy/scipy matrices with its row/group bookkeeping, and the checked NNLS that
the projections and multiplier fits are built on.

Indexing (MATH.md section 3): q = vec(Q) has one group g = p m + j of d' columns per neuron j of
pattern p. The cone rows G are first-layer rows (p, i, j) at index (p n + i) m + j, which read
group p m + j only, then (depth 3) second-layer rows (p, i) at n1 + p n + i, which read every
group of pattern p.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import lsq_linear, nnls as _scipy_nnls

from ...program import RestrictedProgram


def nnls(M: np.ndarray, b: np.ndarray, maxiter=None):
    """argmin_{x >= 0} ||M x - b|| and its residual norm, checked.

    scipy's Lawson-Hanson can return a non-optimal x with a wrong residual norm without a warning
    (scipy issue #25389; met here projecting a warm start onto a cone with more rows than
    dimensions, whose "projection" still violated rows). Its KKT conditions are checked, and on a
    violation the bounded-variable least squares of ``lsq_linear`` answers.
    """
    try:
        x, _ = _scipy_nnls(M, b, maxiter=maxiter)
    except RuntimeError:  # iteration limit
        x = None
    if x is not None and np.all(np.isfinite(x)):
        r = b - M @ x
        w = M.T @ r  # the negative gradient: <= 0 where x = 0, = 0 where x > 0
        tol = 1e-6 * float(np.abs(M).max(initial=0.0)) * float(np.linalg.norm(b))
        if float(np.max(np.where(x > 0, np.abs(w), w), initial=-np.inf)) <= tol:
            return x, float(np.linalg.norm(r))
    x = lsq_linear(M, b, bounds=(0.0, np.inf), method="bvls", tol=1e-13).x
    return x, float(np.linalg.norm(b - M @ x))


class Problem:
    """The program's matrices as numpy/scipy objects, with the row/group bookkeeping."""

    def __init__(self, program: RestrictedProgram):
        self.program = program
        self.A = program.prediction_matrix().tocsc()
        self.G = program.cone_matrix().tocsr()
        self.y = program.y.double().cpu().numpy()
        self.n, self.N = self.A.shape
        self.d, self.m, self.P = program.d, program.m, program.P
        self.ng = self.P * self.m
        self.beta = program.beta
        self.C = self.G.shape[0]
        self.n1 = self.P * self.n * self.m
        n, m, P = self.n, self.m, self.P
        # first-layer row (p, i, j) -> group p*m + j; second-layer row (p, i) -> pattern p
        idx1 = np.arange(self.n1)
        self.row_group = np.full(self.C, -1, dtype=np.int64)
        self.row_group[: self.n1] = (idx1 // (n * m)) * m + idx1 % m
        self.row_pattern = np.empty(self.C, dtype=np.int64)
        self.row_pattern[: self.n1] = idx1 // (n * m)
        self.row_pattern[self.n1 :] = np.arange(self.C - self.n1) // n if self.C > self.n1 else 0
        self.two_layer_rows = self.C > self.n1
        # a row's scale: |row . q| <= ||row|| * ||q_rows_block||, used for relative slacks
        self.row_norm = np.sqrt(np.asarray(self.G.multiply(self.G).sum(axis=1)).ravel())
        col_nnz = np.diff(self.A.indptr)
        # groups of patterns that predict nothing: zero is optimal for them (a neuron that predicts
        # nothing in a live pattern is not dead: through the shared second-layer rows it can make
        # room for the pattern's other neurons)
        silent = col_nnz.reshape(self.P, self.m * self.d).sum(axis=1) == 0
        self.dead = np.repeat(silent, self.m)
        self.scale = max(1.0, float(np.abs(self.y).max()))
        # patterns that occur more than once (union() removes duplicates, concatenate() not)
        self.duplicates = {}
        pats = program.patterns
        keep = pats.unique_index()
        if len(keep) < self.P:
            for p in range(self.P):
                rep = next(k for k in keep if pats.same_pattern(p, pats, k))
                self.duplicates.setdefault(rep, []).append(p)
            self.duplicates = {k: v for k, v in self.duplicates.items() if len(v) > 1}
        self._rows1_cache: dict = {}
        self._blocks: dict = {}
        # dense as well: the face Newton steps multiply A by thin null-space bases
        self.A_dense = self.A.toarray()

    # -- indices -----------------------------------------------------------------------------
    def cols(self, groups) -> np.ndarray:
        groups = np.asarray(groups, dtype=np.int64)
        return (groups[:, None] * self.d + np.arange(self.d)[None, :]).ravel()

    def pattern_groups(self, p: int) -> np.ndarray:
        """The groups (neurons) of pattern p."""
        return np.arange(p * self.m, (p + 1) * self.m)

    def rows1(self, g: int) -> np.ndarray:
        p, j = divmod(int(g), self.m)
        return (p * self.n + np.arange(self.n)) * self.m + j

    def rows2(self, p: int) -> np.ndarray:
        return self.n1 + p * self.n + np.arange(self.n)

    def pattern_rows(self, p: int, groups) -> np.ndarray:
        """The cone rows of pattern p that read ``groups``: their first-layer rows, then the
        pattern's second-layer rows (which read every group of p)."""
        rows = [self.rows1(g) for g in groups]
        if self.two_layer_rows:
            rows.append(self.rows2(p))
        return np.concatenate(rows)

    def reading_rows(self, S: np.ndarray) -> np.ndarray:
        """Rows that read some group of S (first-layer rows of S, second-layer rows of its patterns)."""
        reads = np.zeros(self.C, dtype=bool)
        reads[: self.n1] = S[self.row_group[: self.n1]]
        if self.two_layer_rows:
            reads[self.n1 :] = S.reshape(self.P, self.m).any(axis=1)[self.row_pattern[self.n1 :]]
        return reads

    def block(self, p: int, groups, rows) -> np.ndarray:
        """G[rows][:, cols(groups)] dense, for rows and groups of pattern p.

        The pattern's dense block (all its rows, all its columns) is cached on first use: the
        polish slices it many times, and scipy's sparse fancy indexing costs more than the
        arithmetic on these small blocks."""
        cached = self._blocks.get(p)
        if cached is None:
            all_rows = self.pattern_rows(p, self.pattern_groups(p))
            order = np.argsort(all_rows)
            dense = self.G[all_rows][:, self.cols(self.pattern_groups(p))].toarray()
            cached = (all_rows[order], order, dense)
            if len(self._blocks) > 64:
                self._blocks.clear()
            self._blocks[p] = cached
        sorted_rows, order, dense = cached
        local_rows = order[np.searchsorted(sorted_rows, rows)]
        local_cols = ((np.asarray(groups) - p * self.m)[:, None] * self.d + np.arange(self.d)[None, :]).ravel()
        return dense[np.ix_(local_rows, local_cols)]

    def block1(self, g: int) -> np.ndarray:
        """The first-layer rows of group g restricted to its columns, dense (n, d')."""
        blk = self._rows1_cache.get(g)
        if blk is None:
            blk = self.G[self.rows1(g)][:, g * self.d : (g + 1) * self.d].toarray()
            self._rows1_cache[g] = blk
        return blk

    def times_basis(self, blocks) -> np.ndarray:
        """A restricted to the face, A_S T, block by block (T is block diagonal by pattern).

        The face bases are thin (a few columns per pattern), so the dense products cost
        n * |cols| * k per step; a sparse product with the assembled T would pay sparse indexing
        for a result that is dense anyway.
        """
        return np.hstack([self.A_dense[:, cols] @ T for _, cols, T in blocks])

    # -- values ------------------------------------------------------------------------------
    def norms(self, q: np.ndarray) -> np.ndarray:
        return np.linalg.norm(q.reshape(self.ng, self.d), axis=1)

    def F(self, q: np.ndarray) -> float:
        r = self.A @ q - self.y
        return float(0.5 * (r @ r) + self.beta * self.norms(q).sum())

    def group_slack_scale(self, q: np.ndarray) -> np.ndarray:
        """Per row, ||row|| times the norm of the q-block the row reads (for relative slacks)."""
        nr = self.norms(q)
        scale = np.empty(self.C)
        scale[: self.n1] = nr[self.row_group[: self.n1]]
        if self.two_layer_rows:
            scale[self.n1 :] = nr.reshape(self.P, self.m).sum(axis=1)[self.row_pattern[self.n1 :]]
        return self.row_norm * scale

    def tight_rows(self, q: np.ndarray, S: np.ndarray, rel: float = 1e-6) -> np.ndarray:
        """Rows reading S whose value at q is at most ``rel`` of their scale (relative slack)."""
        gq = self.G @ q
        return self.reading_rows(S) & (gq <= rel * self.group_slack_scale(q))
