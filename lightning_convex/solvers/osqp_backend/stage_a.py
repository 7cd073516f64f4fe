"""Stage A: iteratively reweighted QPs with OSQP, from zero or a warm point (step 1).

||q_g|| <= ||q_g||^2 / (2 eta_g) + eta_g / 2 with equality at eta_g = ||q_g||, so each round
minimises 1/2 ||A q - y||^2 + beta/2 sum_g ||q_g||^2 / eta_g over the rows in a working set,
then sets eta_g = max(||q_g||, floor). Only the diagonal of P changes between rounds, so one
OSQP workspace is reused (``update(Px=..., Px_idx=...)``) and warm started. Rows violated by a
round's solution join the working set (a new setup) before the next round.
"""

from __future__ import annotations

import numpy as np
import osqp
import scipy.sparse as sp

from .limits import Limits
from .problem import Problem
from .qp import QPStats, solve_qp


class ReweightedQPs:
    """The reweighted OSQP rounds of one run; ``W`` is the working set of cone rows."""

    def __init__(self, pb: Problem, eps: float, verbose: bool, stats: QPStats):
        self.pb = pb
        self.eps = eps
        self.verbose = verbose
        self.stats = stats
        self.groups = np.flatnonzero(~pb.dead)
        self.cols = pb.cols(self.groups)
        Ad = pb.A_dense[:, self.cols]
        self.H = Ad.T @ Ad
        self.lin = -(Ad.T @ pb.y)
        self.diag_scale = max(float(np.trace(self.H)) / max(self.H.shape[0], 1), 1e-300)
        self.Gs = pb.G[:, self.cols].tocsr()
        self.touch = np.diff(self.Gs.indptr) > 0
        self.solver = None
        self.W = None

    def _setup(self, wdiag, x0, y0, limits: Limits):
        Pm = sp.triu(sp.csc_matrix(self.H + np.diag(wdiag)), format="csc")
        Pm.sort_indices()
        # positions of the diagonal entries in Pm.data (upper triangle, CSC: last in each column)
        self.diag_idx = Pm.indptr[1:] - 1
        Wi = np.flatnonzero(self.W)
        GW = self.Gs[Wi].tocsc()
        self.solver = osqp.OSQP()
        remaining = limits.remaining()
        self.solver.setup(Pm, self.lin.copy(), GW, np.zeros(Wi.size), np.full(Wi.size, np.inf),
                          verbose=False, eps_abs=self.eps, eps_rel=self.eps, polishing=False,
                          max_iter=4000, time_limit=max(remaining, 1e-3))
        if x0 is not None:
            self.solver.warm_start(x=x0, y=y0 if y0 is not None and y0.size == Wi.size else None)

    def run(self, q: np.ndarray, rounds: int, limits: Limits, rel_stop: float = 1e-4) -> np.ndarray:
        """At most ``rounds`` rounds from q, stopping early once a round lowers F by at most
        ``rel_stop`` relative; returns the last point (q itself when an inner QP failed)."""
        pb, d = self.pb, self.pb.d
        beta = pb.beta
        x = q[self.cols].copy()
        nr = np.linalg.norm(x.reshape(-1, d), axis=1)
        if nr.max() > 0:
            eta = np.maximum(nr, 1e-3 * nr.max())
        else:
            # a light ridge to start from: beta/eta about 1% of the mean curvature of the loss
            eta = np.full(nr.size, beta / (1e-2 * self.diag_scale))
        if self.W is None:
            # rows start in the working set only where they are nearly tight at a nonzero start.
            # At zero every row is tight, but few of them bind at the optimum: the ridge point's
            # violated rows join lazily, which keeps each QP far smaller than the whole program.
            self.W = np.zeros(pb.C, dtype=bool)
            if nr.max() > 0:
                gq = self.Gs @ x
                self.W = self.touch & (gq <= 1e-3 * pb.row_norm * nr.max())
        y_prev = None
        f_prev = None
        diag = np.arange(self.H.shape[0])
        for it in range(rounds):
            wdiag = np.repeat(beta / eta, d)
            for _ in range(20):
                if self.solver is None:
                    self._setup(wdiag, x, y_prev, limits)
                else:
                    self.solver.update(Px=self.H[diag, diag] + wdiag, Px_idx=self.diag_idx)
                    self.solver.warm_start(x=x, y=y_prev)
                self.solver.update_settings(time_limit=max(limits.remaining(), 1e-3))
                res = solve_qp(self.solver, self.stats, limits)
                if res is None:
                    return q
                x_new = res.x
                gq = self.Gs @ x_new
                scale = pb.row_norm * max(float(np.abs(x_new).max()), 1e-300)
                viol = self.touch & ~self.W & (gq < -10 * self.eps * scale)
                if not viol.any():
                    y_prev = res.y
                    break
                # the most violated rows: up to d' per group / pattern, then a fresh setup
                self._add_rows(np.flatnonzero(viol), gq)
                self.solver = None
                y_prev = None
                x = x_new
            x = x_new
            nr = np.linalg.norm(x.reshape(-1, d), axis=1)
            eta = np.maximum(nr, 1e-6 * max(nr.max(), 1e-300))
            qq = np.zeros(pb.N)
            qq[self.cols] = x
            f = pb.F(qq)
            if self.verbose:
                print(f"[osqp] IRLS {it}: F={f:.10g} osqp_it={res.info.iter} |W|={int(self.W.sum())}")
            # the rounds are the cheap way to get close; stop once they stop paying off
            if f_prev is not None and f_prev - f <= rel_stop * abs(f):
                break
            f_prev = f
        q = np.zeros(pb.N)
        q[self.cols] = x
        return q

    def _add_rows(self, viol_rows: np.ndarray, gq: np.ndarray):
        pb = self.pb
        key = np.where(pb.row_group[viol_rows] >= 0, pb.row_group[viol_rows], pb.ng + pb.row_pattern[viol_rows])
        order = np.lexsort((gq[viol_rows], key))
        rows, key = viol_rows[order], key[order]
        first = np.r_[0, np.flatnonzero(np.diff(key)) + 1]
        rank = np.arange(rows.size) - np.repeat(first, np.diff(np.r_[first, rows.size]))
        self.W[rows[rank < pb.d]] = True
