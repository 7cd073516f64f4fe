"""Stage 1: proximal Newton steps on the smoothed program, each step one OSQP QP.

The group norm is replaced by phi_e(x) = sqrt(||x||^2 + e^2) - e, which is smooth, convex, and
within e of ||x||; so

    F_e(q) = 1/2 ||A q - y||^2 + beta sum_g phi_e(q_g)      s.t.  G q >= 0

is a smooth convex program over a polyhedron with F_e <= F <= F_e + beta e (number of groups).
A proximal Newton step (Lee, Sun & Saunders 2014: the smooth part replaced by its second-order
model, the constraint kept exactly) is the QP

    minimize  1/2 ||r||^2 + beta sum_g [ grad_g . x_g + 1/2 (x_g - q_g)' H_g (x_g - q_g) ]
    s.t.      r = A x - y,   G x >= 0,

with grad_g = q_g / eta_g, H_g = (I - q_g q_g' / eta_g^2) / eta_g, eta_g = sqrt(||q_g||^2 + e^2).
It is written with the residual r as a variable, so that P is block diagonal (one d' x d' block per
group, then the identity on r) and the constraint matrix [[A, -I], [G, 0]] never changes: between
steps only P's values, the linear term and the tolerance change, so OSQP keeps its workspace (its
factorisation is updated, not rebuilt) and starts from the previous primal and dual point.
H_g is positive definite for e > 0, so every QP is strictly convex in x.

Its multipliers: OSQP's duals y of the rows G x >= 0 give mu = max(-y, 0), and at the solution
A^T v + G^T mu = beta (grad_g + H_g (x_g - q_g)) per group, whose norm is below beta at a fixed
point (||q_g|| / eta_g < 1): the smoothed problem's own multipliers are nearly dual feasible for the
exact program (MATH.md section 5), zero groups included.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import osqp
import scipy.sparse as sp

from .limits import Limits
from .problem import Problem
from .qp import QPStats, solve_qp

#: iterations OSQP may take on one step (a step that stops short is still a usable direction)
MAX_QP_ITER = 4000


def smoothed_value(pb: Problem, q: np.ndarray, e: float) -> float:
    """F_e(q)."""
    r = pb.A @ q - pb.y
    nr = pb.norms(q)
    return float(0.5 * (r @ r) + pb.beta * (np.sqrt(nr * nr + e * e) - e).sum())


def smoothed_gradient(pb: Problem, q: np.ndarray, e: float) -> np.ndarray:
    """grad F_e(q)."""
    Q = q.reshape(pb.ng, pb.d)
    eta = np.sqrt(np.einsum("gd,gd->g", Q, Q) + e * e)
    return pb.A.T @ (pb.A @ q - pb.y) + pb.beta * (Q / eta[:, None]).ravel()


@dataclass
class Step:
    """One QP step: the QP's point x (full length), the cone multipliers mu (full length)."""

    x: np.ndarray
    mu: np.ndarray
    iterations: int


class SmoothedQP:
    """The proximal Newton QP over the working groups and a working set of cone rows, kept in one
    OSQP workspace.

    Columns: the working groups' q, then r (n). Rows: r = A q - y (n equalities), then the cone
    rows of the working set W that read a working group. Few rows bind at the optimum (a nonzero
    group sits on an extreme ray of its cone), so W starts with the rows nearly tight at the start
    point and grows by the rows a step violates (:meth:`extend`, the most violated d' per group or
    pattern at a time, as cutting planes); each growth rebuilds the workspace, everything else
    only updates it. W never shrinks, so it is rebuilt at most once per row.
    """

    def __init__(self, pb: Problem, groups: np.ndarray, working: np.ndarray, stats: QPStats):
        self.pb, self.stats = pb, stats
        d, n = pb.d, pb.n
        self.groups = np.asarray(groups, dtype=np.int64)
        k = self.groups.size
        self.cols = pb.cols(self.groups)
        nq = self.cols.size
        self._A = pb.A[:, self.cols]
        self._G = pb.G[:, self.cols].tocsr()
        self.reads = np.diff(self._G.indptr) > 0
        self.working = working & self.reads
        # P's pattern, fixed: the upper triangle of every d' x d' block, then r's diagonal. The
        # values are filled through ``order`` (an entry's position in the CSC data), so entries
        # that happen to be zero keep their place in the pattern.
        ii, jj = np.triu_indices(d)
        blk = np.repeat(np.arange(k), ii.size)
        self._tri = (ii, jj)
        rows = np.r_[blk * d + np.tile(ii, k), nq + np.arange(n)]
        cols = np.r_[blk * d + np.tile(jj, k), nq + np.arange(n)]
        pattern = sp.csc_matrix((np.arange(1.0, rows.size + 1), (rows, cols)), shape=(nq + n, nq + n))
        pattern.sort_indices()
        self._order = pattern.data.astype(np.int64) - 1
        self._pattern = pattern
        self.solver = None
        self._y = None
        self._setup_rows()

    def _setup_rows(self):
        pb, n = self.pb, self.pb.n
        old_rows, old_y = getattr(self, "rows", None), self._y
        self.rows = np.flatnonzero(self.working)
        G_w = self._G[self.rows]
        self.Acon = sp.vstack([sp.hstack([self._A, -sp.identity(n)]),
                               sp.hstack([G_w, sp.csr_matrix((self.rows.size, n))])], format="csc")
        self.l = np.r_[pb.y, np.zeros(self.rows.size)]
        self.u = np.r_[pb.y, np.full(self.rows.size, np.inf)]
        self.solver = None
        self._y = None
        if old_y is not None:
            # the duals of the rows kept carry over, new rows start at 0
            y = np.zeros(n + self.rows.size)
            y[:n] = old_y[:n]
            y[n + np.searchsorted(self.rows, old_rows)] = old_y[n:]
            self._y = y

    def extend(self, x: np.ndarray, tol: float) -> bool:
        """Add to W the rows that x violates by more than ``tol`` (relative to ||row|| max|x|),
        at most d' per group (first-layer rows) or pattern (second-layer rows), the most violated
        first. Returns whether any row was added (then the workspace is rebuilt)."""
        pb = self.pb
        gx = self._G @ x[self.cols]
        scale = pb.row_norm * max(float(np.abs(x).max()), 1e-300)
        viol = np.flatnonzero(self.reads & ~self.working & (gx < -tol * scale))
        if viol.size == 0:
            return False
        key = np.where(pb.row_group[viol] >= 0, pb.row_group[viol], pb.ng + pb.row_pattern[viol])
        order = np.lexsort((gx[viol] / scale[viol], key))
        viol, key = viol[order], key[order]
        first = np.r_[0, np.flatnonzero(np.diff(key)) + 1]
        rank = np.arange(viol.size) - np.repeat(first, np.diff(np.r_[first, viol.size]))
        self.working[viol[rank < pb.d]] = True
        self._setup_rows()
        return True

    def _model(self, q: np.ndarray, e: float):
        """P's values (in CSC order) and the linear term of the step from q."""
        pb, d = self.pb, self.pb.d
        Q = q[self.cols].reshape(-1, d)
        eta = np.sqrt(np.einsum("gd,gd->g", Q, Q) + e * e)
        U = Q / eta[:, None]
        H = (np.eye(d)[None] - U[:, :, None] * U[:, None, :]) / eta[:, None, None]
        vals = np.r_[pb.beta * H[:, self._tri[0], self._tri[1]].ravel(), np.ones(pb.n)]
        lin = np.r_[pb.beta * (U - np.einsum("gij,gj->gi", H, Q)).ravel(), np.zeros(pb.n)]
        return vals[self._order], lin

    def step(self, q: np.ndarray, e: float, eps: float, limits: Limits, x0=None):
        """The QP's solution from q at smoothing e and OSQP tolerance eps (warm started at x0,
        default q), or None on failure."""
        pb = self.pb
        Px, lin = self._model(q, e)
        remaining = max(limits.remaining(), 1e-3)
        if self.solver is None:
            P = self._pattern.copy()
            P.data = Px
            self.solver = osqp.OSQP()
            self.solver.setup(P, lin, self.Acon, self.l, self.u, verbose=False, eps_abs=eps, eps_rel=eps,
                              polishing=False, max_iter=MAX_QP_ITER, time_limit=remaining)
        else:
            self.solver.update(Px=Px, q=lin)
            self.solver.update_settings(eps_abs=eps, eps_rel=eps, time_limit=remaining)
        xw = (q if x0 is None else x0)[self.cols]
        self.solver.warm_start(x=np.r_[xw, self._A @ xw - pb.y], y=self._y)
        res = solve_qp(self.solver, self.stats, limits)
        if res is None:
            return None
        self._y = res.y
        x = np.zeros(pb.N)
        x[self.cols] = res.x[: self.cols.size]
        mu = np.zeros(pb.C)
        mu[self.rows] = np.maximum(-res.y[pb.n :], 0.0)
        return Step(x, mu, int(res.info.iter))
