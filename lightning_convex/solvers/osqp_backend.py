"""OSQP adapter: the restricted SOCP through OSQP quadratic programs, an exact face polish and a
duality-gap certificate.

The restricted program (MATH.md section 3), with one group g = (p, j) per neuron of a pattern:

    minimize  F(q) = 1/2 ||A q - y||^2 + beta * sum_g ||q_g||      s.t.  G q >= 0

OSQP solves QPs only. What makes the SOCP hard for it (measured on the UCI and synthetic
programs of ``benchmarks/solvers.py``): most groups are zero at the optimum (all P*n*(m+1) rows
of a zero group are tight), the nonzero groups sit on low-dimensional faces of their cones (a
nonzero group typically has d'-1 tight rows: it lies on an extreme ray), and many tight rows are
linearly dependent. Every QP built from the program is therefore degenerate: OSQP's ADMM needs
hundreds to thousands of iterations and its own polish fails. So OSQP is used where a first-order
QP solver is good (a moderately accurate point, the joint moves of many groups at once), and
exactness comes from a small smooth problem on the identified face.

1. Reweighted QPs with OSQP (``_StageA``; cold starts). ||q_g|| <= ||q_g||^2/(2 eta_g) + eta_g/2
   with equality at eta_g = ||q_g||, so each round minimises 1/2||A q - y||^2 +
   beta/2 sum_g ||q_g||^2/eta_g over the rows of a working set and resets eta_g. Only the
   diagonal of P changes between rounds: one OSQP workspace is reused through
   ``update(Px=..., Px_idx=...)`` with warm starts; rows the solution violates join the working
   set (the most violated d' per group or pattern). From a zero start the working set starts
   empty (at q = 0 every row is tight, and taking them all made each QP 10x larger: on the
   n = 500 synthetic program of the benchmark 3.5e3 of 4e4 rows ever join). A few rounds give a point within ~1e-4..1e-5
   of the optimum whose zero groups are small (dropped below 1e-3 of the largest group).
2. Feasible start. The OSQP point meets the rows to ADMM accuracy only; its Euclidean projection
   on each pattern's cone (the dual of the projection is a nonnegative least-squares problem,
   scipy's NNLS) is exactly feasible, and the rows NNLS leaves active (linearly independent by
   construction) start the working face E.
3. Newton on the face (``_StageB``). On {G_E q = 0, q_g = 0 off the support S}, q = T z with T an
   orthonormal null-space basis per pattern (SVD, which also discards dependent rows), F is
   smooth; Newton steps on z (Cholesky) with a ratio test on the rows outside E (blocking rows
   join E; a group whose face shrinks to {0} leaves S) and Armijo backtracking.
4. Multipliers and certificate. mu >= 0 is fitted per pattern by NNLS on the tight rows:
   stationarity (G^T mu)_g = beta q_g/||q_g|| - A_g^T v on S (weight 1e5), and for zero groups
   the smallest ||A_g^T v + (G^T mu)_g||, with Lawson's reweighting pushing the fit towards the
   minimax that the certificate needs (a zero pattern that duplicates a nonzero one takes its
   twin's multipliers). With v = y - A q, any c in [0, beta / max_g ||A_g^T v + (G^T mu)_g||]
   makes c v dual feasible (MATH.md section 5): g(c v) = c v.y - c^2/2 ||v||^2 <= optimum.
5. Active-set updates when the gap is open: release the tight rows whose least-squares
   multipliers are negative; let zero groups enter along the projection of A_g^T v on the cone
   of their tight rows when its norm exceeds beta (a one-dimensional step each, then a line
   search); when no group can move alone (the second-layer rows couple the neurons of a
   pattern), one OSQP QP over S and the flagged groups with the Newton model of the norm,
   beta (t_g + ||(I - u_g u_g^T) q_g||^2/(2 eta_g)), t_g >= max(0, u_g^T q_g) (exact kink at 0),
   makes the joint move; its point is projected (step 2) and kept only if F decreased.

Stopping rule: ``OPTIMAL`` iff the certified relative gap (F(q) - g(c v)) / F(q) <= ``tol`` and
the largest cone-row violation max(0, -min G q) <= ``feas_tol`` * max(1, max|y|) (iterates of
steps 2-5 satisfy the rows to rounding, ~1e-15). Otherwise the best feasible point comes back
with ``TIME_LIMIT`` / ``ITERATION_LIMIT`` (``max_iter`` counts outer iterations: the stage-A
run and each face solve of the active-set cycles; the Newton steps of one face, one per row met
on the way, are capped at 60 instead), the mapped status of an inner OSQP failure
(``STATUS_MAP``) when one stopped progress, or ``INACCURATE`` when the active-set updates stall
with the gap open. The objective, residual and violation of the returned Solution are recomputed
from Q by the program.

Warm starts: a :class:`Solution`, the ``ParallelReLU`` the patterns came from (q_kj = w3_k w2_kj
W1_k[:, j]) or a convex variable Q. A Solution's patterns are matched exactly where they are
unchanged, otherwise to the nearest unused old pattern (fewest differing D1/D2 entries, signs equal
on the neurons its Q uses): a few SGD steps change every pattern in some rows, and exact matching
alone kept none on the benchmark's programs. Each pattern's Q is then projected onto its new cone
(step 2's NNLS; a pattern whose projection fails starts at zero). When the projected point's F is
within ``WARM_GATE`` x the old objective, the active-set cycles (steps 3-5) start from it directly,
for at most ``DIRECT_WARM_ITERS`` face solves and the old solve's own time; if that does not
certify, a cold solve follows, so a warm call costs at most about one cold solve more than a cold
one. A network or Q (feasible, far from optimal) runs step 1 from that point instead (up to
``warm_irls_rounds`` rounds, stopping when a round gains < 1e-4 relative).

NNLS: scipy's Lawson-Hanson can return a non-optimal point with a wrong residual norm and no
warning (scipy issue #25389; met here on a warm-start projection), so every NNLS result is checked
against its KKT conditions and redone with ``lsq_linear``'s BVLS when it fails them.

References: B. Stellato, G. Banjac, P. Goulart, A. Bemporad, S. Boyd, "OSQP: an operator splitting
solver for quadratic programs", Math. Prog. Comp. 12 (2020); I. Daubechies, R. DeVore, M. Fornasier,
C. S. Gunturk, "Iteratively reweighted least squares minimization for sparse recovery", CPAM 63
(2010); J. Nocedal, S. Wright, "Numerical Optimization", 2nd ed. (2006), ch. 16 (null-space and
active-set methods) and ch. 18 (SQP); C. Lawson, R. Hanson, "Solving Least Squares Problems"
(1974) (NNLS); C. Lawson, "Contributions to the theory of linear least maximum approximation",
PhD thesis, UCLA (1961) (minimax by reweighting); T. Ergen, M. Pilanci, "Global Optimality Beyond
Two Layers: Training Deep ReLU Networks via Convex Programs", ICML 2021 (the program, its dual).
"""

from __future__ import annotations

import copy
import time
from typing import Optional

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
import torch
from scipy.optimize import lsq_linear, nnls as _scipy_nnls

from ..duality import lower_bound, relative_gap
from ..model import ParallelReLU
from ..program import RestrictedProgram
from ..reconstruct import network_variable
from ..solution import Solution, SolveStatus
from .registry import Backend, Capabilities

#: OSQP's status (by enum name) -> SolveStatus, for the inner QPs.
STATUS_MAP = {
    "OSQP_SOLVED": SolveStatus.OPTIMAL,
    "OSQP_SOLVED_INACCURATE": SolveStatus.INACCURATE,
    "OSQP_PRIMAL_INFEASIBLE": SolveStatus.INFEASIBLE,
    "OSQP_PRIMAL_INFEASIBLE_INACCURATE": SolveStatus.INFEASIBLE,
    "OSQP_DUAL_INFEASIBLE": SolveStatus.UNBOUNDED,
    "OSQP_DUAL_INFEASIBLE_INACCURATE": SolveStatus.UNBOUNDED,
    "OSQP_MAX_ITER_REACHED": SolveStatus.ITERATION_LIMIT,
    "OSQP_TIME_LIMIT_REACHED": SolveStatus.TIME_LIMIT,
    "OSQP_NON_CVX": SolveStatus.NUMERICAL_ERROR,
    "OSQP_SIGINT": SolveStatus.FAILED,
    "OSQP_UNSOLVED": SolveStatus.FAILED,
}

LAWSON_ITERS = 25
JOINT_REFINE = 1e-3
# a warm-start Solution goes straight to the active-set cycles when its projection onto the new
# cones is within this factor of its old objective, for at most this many face solves
# and at most WARM_BUDGET times the old solve's seconds
WARM_GATE = 1.5
DIRECT_WARM_ITERS = 25
WARM_BUDGET = 1.0
EQ_WEIGHT = 1e5

# inner QP outcomes stage A can still use (the line search on F guards every step)
_USABLE_QP = (SolveStatus.OPTIMAL, SolveStatus.INACCURATE, SolveStatus.ITERATION_LIMIT)


def nnls(M: np.ndarray, b: np.ndarray, maxiter=None):
    """argmin_{x >= 0} ||M x - b|| and its residual norm, checked.

    scipy's Lawson-Hanson (1.17.1 here) can return a non-optimal x with a wrong residual norm
    without a warning (scipy issue #25389; met here projecting a warm start onto a cone of
    150 rows in 20 dimensions: min M x = -4.4 after the "projection"). Its KKT conditions are
    checked, and on a violation the bounded-variable least squares of ``lsq_linear`` answers.
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


class _Limit(Exception):
    """Raised inside the loop when the time or iteration budget is spent."""

    def __init__(self, status: SolveStatus):
        self.status = status


class _Problem:
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
        self.dead = col_nnz.reshape(self.ng, self.d).sum(axis=1) == 0  # groups that predict nothing
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
        # dense as well: stage A needs A^T A (N x N) anyway, and the face products are thin
        self.A_dense = self.A.toarray()

    # -- indices -----------------------------------------------------------------------------
    def cols(self, groups) -> np.ndarray:
        groups = np.asarray(groups, dtype=np.int64)
        return (groups[:, None] * self.d + np.arange(self.d)[None, :]).ravel()

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

    def block1(self, g: int) -> np.ndarray:
        """The first-layer rows of group g restricted to its columns, dense (n, d')."""
        blk = self._rows1_cache.get(g)
        if blk is None:
            blk = self.G[self.rows1(g)][:, g * self.d : (g + 1) * self.d].toarray()
            self._rows1_cache[g] = blk
        return blk

    def times_basis(self, blocks) -> np.ndarray:
        """A restricted to the face, A_S T, block by block (T is block diagonal by pattern).

        The face bases are thin (a few columns per pattern), so products with the dense A cost
        n * |cols| * k per step; the sparse product with the assembled T took most of each Newton
        step on the n = 500 synthetic program (3.0 s of 12.4 s in csc_matvecs, cProfile).
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


def _groups_of_pattern(pb: _Problem, p: int) -> np.ndarray:
    return np.arange(p * pb.m, (p + 1) * pb.m)


# ------------------------------------------------------------------------------------------
# warm starts
# ------------------------------------------------------------------------------------------
def _q_from_network(program: RestrictedProgram, net) -> np.ndarray:
    """Q of a ParallelReLU on this program's pattern set (q_kj = w3_k w2_kj W1_k[:, j])."""
    if not isinstance(net, ParallelReLU):
        raise TypeError(
            f"warm_start must be a Solution, a ParallelReLU or a Q array, got {type(net).__name__}")
    net = net if net.W1.device == program.device else copy.deepcopy(net).to(program.device)
    return network_variable(net, program.rows, program.patterns).cpu().numpy().reshape(-1)


def _q_from_array(program: RestrictedProgram, Q) -> np.ndarray:
    """A convex variable given directly (the hybrid loop's Q of the network on its own set)."""
    if isinstance(Q, torch.Tensor):
        Q = Q.detach().double().cpu().numpy()
    Q = np.asarray(Q, dtype=float)
    if Q.shape != tuple(program.shape):
        raise ValueError(
            f"warm_start Q has shape {Q.shape}, the program's variable is {tuple(program.shape)}")
    if not np.all(np.isfinite(Q)):
        raise ValueError("warm_start Q has NaN or inf entries")
    return Q.reshape(-1).copy()


def _q_from_solution(program: RestrictedProgram, sol: Solution) -> np.ndarray:
    """The old solution's Q on this program's patterns.

    A pattern found unchanged takes its Q. After a few SGD steps every pattern usually differs
    in some rows (``benchmarks/solvers.py`` prints how many its changed programs keep), so an
    unmatched pattern takes the Q of the nearest unused old pattern (fewest differing D1/D2
    entries) whose signs agree on the neurons that Q uses; the caller projects it onto its cone.
    """
    old = sol.program
    if (old.n, old.d, old.m, old.depth) != (program.n, program.d, program.m, program.depth):
        raise ValueError(
            "warm_start Solution is for a program of another shape "
            f"(n, d', m, depth) = {(old.n, old.d, old.m, old.depth)}, expected "
            f"{(program.n, program.d, program.m, program.depth)}"
        )
    new_p, old_p = program.patterns, old.patterns
    where = new_p.index_in(old_p)
    Qold = sol.Q.detach().double().cpu().numpy()
    Q = np.zeros(program.shape)
    used = set()
    for p, k in enumerate(where):
        if k >= 0:
            Q[p] = Qold[k]
            used.add(k)
    # interior-point solutions carry ~1e-10 residue on zero neurons: relative threshold
    neuron_norm = np.linalg.norm(Qold, axis=2)
    on = neuron_norm > 1e-8 * max(float(neuron_norm.max()), 1e-300)
    live = [k for k in range(old.P) if k not in used and on[k].any()]
    todo = [p for p, k in enumerate(where) if k < 0]
    if live and todo:
        a, b = _pattern_bits(new_p, todo), _pattern_bits(old_p, live)
        dist = a.sum(1)[:, None] + b.sum(1)[None, :] - 2.0 * (a @ b.T)
        # the signs must agree where they matter: sig, and s on the neurons the old Q uses
        # (the sign of a dead neuron's w2 flips freely under SGD)
        s_new, s_old = new_p.s[todo].cpu().numpy(), old_p.s[live].cpu().numpy()
        clash = ((s_new[:, None, :] != s_old[None, :, :]) & on[live][None]).any(axis=2)
        clash |= new_p.sig[todo].cpu().numpy()[:, None] != old_p.sig[live].cpu().numpy()[None, :]
        dist[clash] = np.inf
        for flat in np.argsort(dist, axis=None):
            i, j = divmod(int(flat), len(live))
            if not np.isfinite(dist[i, j]):
                break
            if todo[i] is None or live[j] is None:
                continue
            Q[todo[i]] = Qold[live[j]]
            todo[i] = live[j] = None
    return Q.reshape(-1)


def _pattern_bits(patterns, index) -> np.ndarray:
    """D1 (and D2) of the indexed patterns as 0/1 rows, for Hamming distances by inner products."""
    bits = patterns.D1[index].flatten(1)
    if patterns.D2 is not None:
        bits = torch.cat([bits, patterns.D2[index]], dim=1)
    return bits.double().cpu().numpy()


def _feasible_start(pb: _Problem, q: np.ndarray, feas_abs: float) -> np.ndarray:
    """q with every pattern whose cone rows it violates set to zero (zero is always feasible)."""
    if not np.all(np.isfinite(q)):
        return np.zeros(pb.N)
    gq = pb.G @ q
    bad = np.unique(pb.row_pattern[gq < -feas_abs])
    if bad.size:
        q = q.copy().reshape(pb.P, -1)
        q[bad] = 0.0
        q = q.reshape(-1)
    return q


# ------------------------------------------------------------------------------------------
# pricing and certificate
# ------------------------------------------------------------------------------------------
def _fit_multipliers(pb: _Problem, q: np.ndarray, S: np.ndarray, E: np.ndarray, v: np.ndarray):
    """Cone multipliers mu >= 0 (full length) fitted per pattern by NNLS.

    Equations: for g in S, (G^T mu)_g = beta u_g - A_g^T v (weighted); for a zero group, the
    smallest ||A_g^T v + (G^T mu)_g||. Unknowns: the rows in E (tight rows of S-groups) and
    every row of a zero group (all of them are tight at q_g = 0), second-layer rows of a
    pattern when tight. Returns (mu, eq_residual per S-group).
    """
    d, beta = pb.d, pb.beta
    c_all = (pb.A.T @ v).reshape(pb.ng, d)
    nr = pb.norms(q)
    mu = np.zeros(pb.C)
    eq_res = np.zeros(pb.ng)
    weight = EQ_WEIGHT
    gq = pb.G @ q
    tight = gq <= 1e-10 * pb.group_slack_scale(q)
    # A zero pattern that duplicates another one has the same c_g and rows: the multipliers of
    # its twin (tight for the twin, hence for the all-tight zero copy) certify it exactly, where
    # a fit of its own would only approach the tight minimax value beta.
    Sp = S.reshape(pb.P, pb.m).any(axis=1)
    twin = {}
    for key, members in pb.duplicates.items():
        live = [p for p in members if Sp[p]]
        if live:
            for p in members:
                if not Sp[p]:
                    twin[p] = live[0]
    order = [p for p in range(pb.P) if p not in twin] + list(twin)
    for p in order:
        if p in twin:
            src = twin[p]
            off1 = (p - src) * pb.n * pb.m
            r1 = np.concatenate([pb.rows1(g) for g in _groups_of_pattern(pb, src)])
            mu[r1 + off1] = mu[r1]
            if pb.two_layer_rows:
                r2 = pb.rows2(src)
                mu[r2 + (p - src) * pb.n] = mu[r2]
            continue
        # dead groups stay in: shared second-layer multipliers reach their columns too
        groups = _groups_of_pattern(pb, p)
        if pb.dead[groups].all():
            continue
        # complementarity allows mu > 0 on any tight row of the pattern (E is a subset of them)
        rows = pb.pattern_rows(p, groups)
        rows = rows[tight[rows] | E[rows]]
        ins = groups[S[groups]]
        if rows.size == 0:
            if ins.size:
                eq_res[ins] = np.linalg.norm(beta * q.reshape(pb.ng, d)[ins] / nr[ins, None] - c_all[ins], axis=1)
            continue
        cols = pb.cols(groups)
        Mt = pb.G[rows][:, cols].toarray().T  # (len(groups)*d, rows)
        b = -c_all[groups].copy()
        insS = S[groups]
        b[insS] += beta * q.reshape(pb.ng, d)[groups[insS]] / nr[groups[insS], None]
        wts = np.where(insS, weight ** 2, 1.0 / max(int((~insS).sum()), 1))
        # zero groups need max_g ||.|| <= beta, not the least sum of squares: Lawson's
        # reweighting (weights grow with the residual) moves the fit towards the minimax one
        best = None
        for _ in range(LAWSON_ITERS):
            Wr = np.repeat(np.sqrt(wts), d)
            lam, _ = nnls(Mt * Wr[:, None], b.ravel() * Wr)
            res = (Mt @ lam - b.ravel()).reshape(groups.size, d)
            rn = np.linalg.norm(res, axis=1)
            worst = float(rn[~insS].max()) if (~insS).any() else 0.0
            if best is None or worst < best[0]:
                best = (worst, lam, rn)
            if worst <= beta * (1 - 1e-6):
                break
            zw = np.where(insS, 0.0, wts * rn)
            zw = zw / max(float(zw.sum()), 1e-300)
            wts = np.where(insS, weight ** 2, np.maximum(zw, 1e-12))
        worst, lam, rn = best
        mu[rows] = lam
        eq_res[groups[insS]] = rn[insS]
    return mu, eq_res


def _certificate(pb: _Problem, q: np.ndarray, mu: np.ndarray):
    """(F, dual lower bound, relative gap, per-group ||A_g^T v + (G^T mu)_g||)."""
    v = pb.y - pb.A @ q
    Cg = (pb.A.T @ v + pb.G.T @ mu).reshape(pb.ng, pb.d)
    bound = np.linalg.norm(Cg, axis=1)
    F = pb.F(q)
    dual = lower_bound(v @ pb.y, v @ v, pb.beta, bound.max() if bound.size else 0.0).value
    return F, dual, relative_gap(F, dual), bound


# ------------------------------------------------------------------------------------------
# stage A: reweighted QPs with OSQP (fixed sparsity, update + warm start)
# ------------------------------------------------------------------------------------------
class _StageA:
    """IRLS with OSQP: ||q_g|| <= ||q_g||^2 / (2 eta_g) + eta_g / 2 (equality at eta_g = ||q_g||).

    Each round minimises 1/2 ||A q - y||^2 + beta/2 sum_g ||q_g||^2 / eta_g over the rows in the
    working set, then sets eta_g = max(||q_g||, floor). Only the diagonal of P changes between
    rounds, so the OSQP workspace is reused (``update(Px=..., Px_idx=...)``) and warm started.
    Rows violated by a round's solution join the working set (a new setup) before the next.
    """

    def __init__(self, pb: _Problem, eps: float, verbose: bool):
        self.pb = pb
        self.eps = eps
        self.verbose = verbose
        self.qp_solves = 0
        self.osqp_iterations = 0
        self.last_status: Optional[SolveStatus] = None
        self.failed: Optional[SolveStatus] = None
        self.groups = np.flatnonzero(~pb.dead)
        self.cols = pb.cols(self.groups)
        k = self.groups.size
        Ad = pb.A_dense[:, self.cols]
        self.H = Ad.T @ Ad
        self.lin = -(Ad.T @ pb.y)
        self.diag_scale = max(float(np.trace(self.H)) / max(self.H.shape[0], 1), 1e-300)
        self.Gs = pb.G[:, self.cols].tocsr()
        self.touch = np.diff(self.Gs.indptr) > 0
        self.solver = None
        self.W = None

    def _setup(self, wdiag, x0, y0, deadline):
        import osqp

        pb = self.pb
        Pm = sp.triu(sp.csc_matrix(self.H + np.diag(wdiag)), format="csc")
        Pm.sort_indices()
        # positions of the diagonal entries in Pm.data (upper triangle, CSC: last in each column)
        self.diag_idx = Pm.indptr[1:] - 1
        Wi = np.flatnonzero(self.W)
        self.Wi = Wi
        GW = self.Gs[Wi].tocsc()
        self.solver = osqp.OSQP()
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise _Limit(SolveStatus.TIME_LIMIT)
        self.solver.setup(Pm, self.lin.copy(), GW, np.zeros(Wi.size), np.full(Wi.size, np.inf),
                          verbose=False, eps_abs=self.eps, eps_rel=self.eps, polishing=False,
                          max_iter=4000, time_limit=max(remaining, 1e-3))
        if x0 is not None:
            self.solver.warm_start(x=x0, y=y0 if y0 is not None and y0.size == Wi.size else None)

    def run(self, q, rounds, deadline, rel_stop=1e-4):
        """``rounds`` IRLS rounds from q; returns (q, multipliers of the working rows)."""
        import osqp

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
            # rows start in the working set only where they are nearly tight at a nonzero start;
            # from zero (where every row is tight) the ridge point's violated rows join lazily:
            # measured on the n = 500 synthetic program, 3.5e3 of 4e4 rows ever join, and the
            # stage took 2.5 s instead of 10 s
            self.W = np.zeros(pb.C, dtype=bool)
            if nr.max() > 0:
                gq = self.Gs @ x
                self.W = self.touch & (gq <= 1e-3 * pb.row_norm * nr.max())
        y_prev = None
        f_prev = None
        for it in range(rounds):
            wdiag = np.repeat(beta / eta, d)
            for _ in range(20):
                if self.solver is None:
                    self._setup(wdiag, x, y_prev, deadline)
                else:
                    self.solver.update(Px=(self.H[np.arange(self.H.shape[0]), np.arange(self.H.shape[0])] + wdiag), Px_idx=self.diag_idx)
                    self.solver.warm_start(x=x, y=y_prev)
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    raise _Limit(SolveStatus.TIME_LIMIT)
                self.solver.update_settings(time_limit=max(remaining, 1e-3))
                res = self.solver.solve(raise_error=False)
                self.qp_solves += 1
                self.osqp_iterations += int(res.info.iter)
                status = STATUS_MAP.get(osqp.SolverStatus(res.info.status_val).name, SolveStatus.FAILED)
                self.last_status = status
                if status == SolveStatus.TIME_LIMIT:
                    raise _Limit(SolveStatus.TIME_LIMIT)
                if status not in _USABLE_QP or res.x is None or not np.all(np.isfinite(res.x)):
                    self.failed = status if status not in _USABLE_QP else SolveStatus.NUMERICAL_ERROR
                    return q, None
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
        mu = np.zeros(pb.C)
        mu[self.Wi] = np.maximum(-res.y, 0.0)
        return q, mu

    def _add_rows(self, viol_rows: np.ndarray, gq: np.ndarray):
        pb = self.pb
        key = np.where(pb.row_group[viol_rows] >= 0, pb.row_group[viol_rows], pb.ng + pb.row_pattern[viol_rows])
        order = np.lexsort((gq[viol_rows], key))
        rows, key = viol_rows[order], key[order]
        first = np.r_[0, np.flatnonzero(np.diff(key)) + 1]
        rank = np.arange(rows.size) - np.repeat(first, np.diff(np.r_[first, rows.size]))
        self.W[rows[rank < pb.d]] = True


# ------------------------------------------------------------------------------------------
# stage B: Newton on the face
# ------------------------------------------------------------------------------------------
class _StageB:
    """Newton's method on the face {G_E q = 0, q_g = 0 off S} with a ratio test (see module doc)."""

    def __init__(self, pb: _Problem):
        self.pb = pb
        self.newton_steps = 0
        self._cache: dict = {}

    def touches(self, S):
        """Rows that read some group of S (first-layer rows of S, second-layer rows of its patterns)."""
        pb = self.pb
        touches = np.zeros(pb.C, dtype=bool)
        touches[: pb.n1] = S[pb.row_group[: pb.n1]]
        if pb.two_layer_rows:
            touches[pb.n1 :] = S.reshape(pb.P, pb.m).any(axis=1)[pb.row_pattern[pb.n1 :]]
        return touches

    def tight_rows(self, q, S, rel=1e-6):
        pb = self.pb
        gq = pb.G @ q
        return self.touches(S) & (gq <= rel * pb.group_slack_scale(q))

    def basis(self, S, E):
        """Per pattern with S-groups: (groups, columns, orthonormal basis of {G_{E,p} q_p = 0})."""
        pb = self.pb
        blocks = []
        for p in np.unique(np.flatnonzero(S) // pb.m):
            groups = _groups_of_pattern(pb, p)
            groups = groups[S[groups]]
            cols = pb.cols(groups)
            rows = pb.pattern_rows(p, groups)
            rows = rows[E[rows]]
            key = (p, groups.tobytes(), rows.tobytes())
            T = self._cache.get(key)
            if T is not None:
                blocks.append((groups, cols, T))
                continue
            if rows.size == 0:
                T = np.eye(cols.size)
            else:
                Cm = pb.G[rows][:, cols].toarray()
                Cm /= np.maximum(np.linalg.norm(Cm, axis=1, keepdims=True), 1e-300)
                # only V is needed: the full U of a tall matrix would cost rows^2
                _, sv, Vt = np.linalg.svd(Cm, full_matrices=Cm.shape[0] < Cm.shape[1])
                r = int((sv > 1e-10 * max(sv[0], 1e-300)).sum()) if sv.size else 0
                T = Vt[r:].T
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[key] = T
            blocks.append((groups, cols, T))
        return blocks

    def onto_face(self, q, S, E):
        """Project q onto the face, adding rows that the projection makes negative to E, and
        dropping from S the groups whose face is {0}. Returns (q, S, E, blocks)."""
        pb = self.pb
        for _ in range(20):
            blocks = self.basis(S, E)
            q = q.copy()
            keep = np.zeros(pb.N, dtype=bool)
            for groups, cols, T in blocks:
                q[cols] = T @ (T.T @ q[cols])
                keep[cols] = True
            q[~keep] = 0.0
            nr = pb.norms(q)
            gone = S & (nr <= 1e-12 * max(float(nr.max()), 1e-300))
            if gone.any():
                q.reshape(pb.ng, pb.d)[gone] = 0.0
                S = S & ~gone
                E = E & self.touches(S)
                continue
            gq = pb.G @ q
            neg = self.touches(S) & ~E & (gq < -1e-13 * np.maximum(pb.group_slack_scale(q), 1e-300))
            if not neg.any():
                return q, S, E, blocks
            E = E | neg
        return q, S, E, blocks

    def solve_face(self, q, S, E, limits, max_steps=60):
        """Newton on the face until the decrement is negligible. Returns (q, S, E)."""
        pb, beta, d = self.pb, self.pb.beta, self.pb.d
        q, S, E, blocks = self.onto_face(q, S, E)
        f = pb.F(q)
        for _ in range(max_steps):
            limits.check_time()
            if not blocks:
                return q, S, E
            cols = np.concatenate([c for _, c, _ in blocks])
            T = sla.block_diag(*[t for _, _, t in blocks])
            if T.shape[1] == 0:
                return q, S, E
            qS = q[cols]
            AT = pb.times_basis(blocks)
            r = pb.A @ q - pb.y
            Qs = qS.reshape(-1, d)
            nrS = np.linalg.norm(Qs, axis=1)
            U = Qs / nrS[:, None]
            gz = AT.T @ r + T.T @ (beta * U.ravel())
            Hz = AT.T @ AT
            # the norm's Hessian beta (I - u u^T)/||q_g|| is block diagonal: add it pattern by
            # pattern (T is block diagonal by pattern as well)
            row0 = col0 = 0
            for groups_p, cols_p, T_p in blocks:
                kz = T_p.shape[1]
                kg = groups_p.size
                Up = U[row0 // d : row0 // d + kg]
                Tg = T_p.reshape(kg, d, kz)
                proj = np.einsum("gd,gdz->gz", Up, Tg)
                w = beta / nrS[row0 // d : row0 // d + kg]
                Hz[col0 : col0 + kz, col0 : col0 + kz] += (
                    np.einsum("g,gdz,gdw->zw", w, Tg, Tg) - np.einsum("g,gz,gw->zw", w, proj, proj))
                row0 += kg * d
                col0 += kz
            reg = 1e-13 * max(float(np.trace(Hz)) / Hz.shape[0], 1e-300)
            try:
                cf = sla.cho_factor(Hz + reg * np.eye(Hz.shape[0]))
                dz = -sla.cho_solve(cf, gz)
            except (np.linalg.LinAlgError, sla.LinAlgError):
                dz = -np.linalg.lstsq(Hz, gz, rcond=None)[0]
            dec = -float(gz @ dz)
            if not np.isfinite(dec) or dec <= 1e-17 * max(abs(f), 1e-300):
                return q, S, E
            dq = np.zeros(pb.N)
            dq[cols] = T @ dz
            # ratio test on the rows outside E
            gq = pb.G @ q
            gd = pb.G @ dq
            cand = np.flatnonzero(self.touches(S) & ~E & (gd < 0))
            alpha_max, ratios = np.inf, None
            if cand.size:
                ratios = np.maximum(gq[cand], 0.0) / -gd[cand]
                alpha_max = float(ratios.min())
            step = min(1.0, alpha_max)
            fn = f
            while step > 1e-14:
                fn = pb.F(q + step * dq)
                if fn <= f - 1e-4 * step * dec:
                    break
                step *= 0.5
            blocked = alpha_max <= 1.0 and step >= alpha_max * (1 - 1e-12)
            if step > 1e-14 and fn <= f:
                self.newton_steps += 1
                q = q + step * dq
                f = fn
            elif not blocked:
                return q, S, E  # no descent along the Newton direction: the face is solved
            if blocked:
                E = E.copy()
                E[cand[ratios <= alpha_max * (1 + 1e-9) + 1e-300]] = True
            q, S, E, blocks = self.onto_face(q, S, E)
            f = pb.F(q)
        return q, S, E


class _Limits:
    def __init__(self, deadline: float, max_iter: int):
        self.deadline = deadline
        self.budget = deadline - time.perf_counter()
        self.max_iter = max_iter
        self.count = 0

    def tick(self):
        """One outer iteration (a stage-A run or an active-set cycle)."""
        self.count += 1
        if self.count > self.max_iter:
            raise _Limit(SolveStatus.ITERATION_LIMIT)
        self.check_time()

    def check_time(self):
        if time.perf_counter() > self.deadline:
            raise _Limit(SolveStatus.TIME_LIMIT)


# ------------------------------------------------------------------------------------------
# driver
# ------------------------------------------------------------------------------------------
def solve_osqp(program: RestrictedProgram, tol: float = 1e-8, time_limit: float = float("inf"),
               max_iter: int = 500, warm_start=None, verbose: bool = False, eps: float = 1e-5,
               feas_tol: float = 1e-9, irls_rounds: int = 4, warm_irls_rounds: int = 4) -> Solution:
    """Solve the restricted program with OSQP QPs and an exact face polish (see module docstring).

    Args:
        tol: relative duality gap of the certificate that declares ``OPTIMAL``.
        time_limit: seconds; past it the best feasible point returns with ``TIME_LIMIT``.
        max_iter: outer iterations (the stage-A run plus one per face solve); past it
            ``ITERATION_LIMIT``.
        warm_start: a :class:`Solution` (patterns matched exactly or to the nearest old pattern,
            see the module docstring), the ``ParallelReLU`` the patterns came from, or a convex
            variable Q of the program's shape (P, m, d'), tensor or array.
        irls_rounds: reweighted OSQP rounds of step 1 from a zero start.
        warm_irls_rounds: the same from a warm point that does not take the direct path. Measured
            from the trained network itself on the six UCI programs
            (``python benchmarks/warm_from_network.py 20`` vs ``4``): 20 rounds made the warm
            solve slower than cold on four (up to 2.0x), 4 rounds faster on all six (1.1-3.4x).
        eps: OSQP's absolute/relative tolerance for the stage-A QPs (they only identify the face).
        feas_tol: largest cone-row violation accepted, in units of max(1, max|y|).
    """
    for name, value in (("tol", tol), ("eps", eps), ("feas_tol", feas_tol)):
        if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    if not (isinstance(time_limit, (int, float)) and time_limit > 0):
        raise ValueError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
    if not isinstance(max_iter, int) or isinstance(max_iter, bool) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    start = time.perf_counter()
    deadline = start + float(time_limit)

    if warm_start is None:
        q_init = None
    elif isinstance(warm_start, Solution):
        q_init = _q_from_solution(program, warm_start)
    elif isinstance(warm_start, (torch.Tensor, np.ndarray)):
        q_init = _q_from_array(program, warm_start)
    else:
        q_init = _q_from_network(program, warm_start)

    from threadpoolctl import threadpool_limits

    # the dense algebra here is small: threaded BLAS only adds contention (measured 7x slower
    # on a loaded 2-core machine)
    with threadpool_limits(limits=1, user_api="blas"):
        return _solve(program, q_init, tol, eps, feas_tol, start, deadline, max_iter, verbose,
                      irls_rounds if warm_start is None else warm_irls_rounds, warm_start, irls_rounds)


def _solve(program, q_init, tol, eps, feas_tol, start, deadline, max_iter, verbose, irls_rounds,
           warm_start, cold_rounds):
    info = {"tol": tol, "eps": eps, "warm_start": type(warm_start).__name__ if warm_start is not None else None}
    pb = None
    best_q = None
    try:
        pb = _Problem(program)
        feas_abs = feas_tol * pb.scale
        if q_init is None:
            q = np.zeros(pb.N)
        else:
            # rows of a pattern that changed a little are violated a little: project the
            # pattern onto its cone (exactly feasible), zero it only where that fails
            q = q_init if np.all(np.isfinite(q_init)) else np.zeros(pb.N)
            q, _ = _project_feasible(pb, q, pb.norms(q) > 0)
            q = _feasible_start(pb, q, feas_abs)
        q.reshape(pb.ng, pb.d)[pb.dead] = 0.0
        best_q = q
        direct = (isinstance(warm_start, Solution) and (pb.norms(q) > 0).any()
                  and pb.F(q) <= WARM_GATE * float(warm_start.objective))
        if direct:
            # a solution of a slightly changed set, projected, sits near the new optimum's face:
            # the active-set cycles from it directly (BENCHMARKS.md, "osqp warm"), within a
            # budget of the old solve's time, so a failed attempt costs about one cold solve
            budget = WARM_BUDGET * max(float(warm_start.seconds), 0.05)
            status, q, mu, extra = _run(pb, q, tol, eps, feas_abs,
                                        min(deadline, time.perf_counter() + budget),
                                        min(max_iter, DIRECT_WARM_ITERS), verbose, 0, warm=True)
            info["direct_warm"] = status.value
            if status != SolveStatus.OPTIMAL and time.perf_counter() < deadline:
                # it stalled: a cold solve (never worse than not having had the warm start)
                first = (status, q, mu, extra)
                status, q, mu, extra = _run(pb, np.zeros(pb.N), tol, eps, feas_abs, deadline,
                                            max(max_iter - int(extra["iterations"]), 1), verbose,
                                            cold_rounds)
                if status != SolveStatus.OPTIMAL and pb.F(first[1]) < pb.F(q):
                    status, q, mu, extra = first
        else:
            status, q, mu, extra = _run(pb, q, tol, eps, feas_abs, deadline, max_iter, verbose,
                                        irls_rounds, warm=q_init is not None)
        best_q = q
        info.update(extra)
    except _Limit as lim:  # pragma: no cover - handled inside _run
        status, mu = lim.status, None
    except Exception as exc:  # a crash is a failed solve, never an exception downstream
        return Solution.from_variable(
            program, program.zeros() if best_q is None else program.unflatten(best_q),
            status=SolveStatus.FAILED, seconds=time.perf_counter() - start, iterations=0,
            solver="osqp", info={**info, "error": repr(exc)},
        )
    multipliers = program.split_multipliers(mu) if mu is not None else None
    return Solution.from_variable(
        program, program.unflatten(best_q), status=status, seconds=time.perf_counter() - start,
        iterations=int(info.get("iterations", 0)), solver="osqp", multipliers=multipliers, info=info,
    )


def _run(pb: _Problem, q, tol, eps, feas_abs, deadline, max_iter, verbose, irls_rounds,
         warm=False, drop=1e-3):
    limits = _Limits(deadline, max_iter)
    stageA = _StageA(pb, eps, verbose)
    stageB = _StageB(pb)
    beta = pb.beta
    mu = np.zeros(pb.C)
    status = SolveStatus.INACCURATE
    gap = np.inf
    cycles = 0
    joint_stats = {"qp_solves": 0, "osqp_iterations": 0}
    mu_irls = None
    last_f = None
    best, idle = None, 0
    try:
        if irls_rounds > 0:
            limits.tick()
            # cold: a fixed few rounds from the ridge point; warm: until the rounds stop paying
            # off (measured on the UCI programs: either rule alone left some of them stalled)
            q_a, mu_a = stageA.run(q, irls_rounds, deadline, rel_stop=1e-4 if warm else 0.0)
            if pb.F(q_a) < pb.F(q) or not (pb.norms(q) > 0).any():
                q = q_a
                mu_irls = mu_a
        nr = pb.norms(q)
        # groups the reweighting is shrinking away start at zero (re-entry is priced exactly)
        S = nr > drop * max(float(nr.max()), 1e-300)
        q = q.copy()
        q.reshape(pb.ng, pb.d)[~S] = 0.0
        # an exactly feasible start near the OSQP point; the rows it lands on start the face,
        # with the rows already tight there (a warm start from a solution sits on its face)
        q, E = _project_feasible(pb, q, S)
        E |= stageB.tight_rows(q, S, rel=1e-10)
        while True:
            limits.tick()
            q, S, E = stageB.solve_face(q, S, E, limits)
            v = pb.y - pb.A @ q
            mu, eq_res = _fit_multipliers(pb, q, S, E, v)
            F, dual, gap, bound = _certificate(pb, q, mu)
            # "improved" drives the stop on thrashing; best is what a stopped run returns
            improved = best is None or F < best[0] * (1 - 1e-14)
            if best is None or F < best[0]:
                best = (F, q, mu, gap)
            if verbose:
                print(f"[osqp] B: F={F:.14g} gap={gap:.2e} |S|={int(S.sum())} |E|={int(E.sum())} "
                      f"max bound/beta={bound.max() / beta:.9f} max eq_res={eq_res.max():.2e} "
                      f"newton={stageB.newton_steps}")
            if gap <= tol:
                status = SolveStatus.OPTIMAL
                break
            cycles += 1
            # active-set updates that no longer lower F are thrashing: stop (inaccurate)
            if improved:
                idle = 0
            else:
                idle += 1
                if idle > 10:
                    break
            released = _release(pb, q, S, E, v, eq_res)
            if released.size:
                last_f = None
                E = E.copy()
                E[released] = False
                continue
            stalled = last_f is not None and F >= last_f * (1 - 1e-13)
            last_f = F
            moved = None if stalled else _enter(pb, q, S, E, v, bound)
            if moved is not None:
                q, S = moved
                # rows of E the move left slack must leave E: projecting onto them undid the
                # move and distorted the pattern (n = 2000 synthetic: F 24.19 -> 37.02)
                E = stageB.tight_rows(q, S, rel=1e-12) | (E & stageB.tight_rows(q, S, rel=1e-8))
                continue
            best_f = pb.F(q)
            # no single group can move alone (second-layer rows couple the neurons of a
            # pattern): a joint QP step over S and the groups the certificate flags
            cand = (~S) & (~pb.dead) & (bound > beta * (1 + 1e-9))
            # the QP point meets the rows to OSQP's accuracy only: project, then keep it only
            # if it is still better than the certified-feasible point we had. Near the optimum
            # the gain is below what eps resolves (fertility's changed program: 6e-7 absolute
            # left at eps 1e-5), so a failed round is retried once at eps * JOINT_REFINE.
            for eps_round in (eps, eps * JOINT_REFINE):
                moved = _joint_round(pb, q, S, cand, mu, eps_round, deadline, joint_stats)
                if moved is None:
                    continue
                q_try, E_try = _project_feasible(pb, moved[0], moved[1])
                if pb.F(q_try) < best_f:
                    break
                moved = None
            if moved is None:
                break  # stationary and nothing can enter, yet the gap is open: inaccurate
            q, S, E = q_try, moved[1] & (pb.norms(q_try) > 0), E_try
    except _Limit as lim:
        status = lim.status
    if status != SolveStatus.OPTIMAL and best is not None and best[0] < pb.F(q):
        # every face iterate is feasible: a stalled or stopped run returns the best of them
        _, q, mu, gap = best
    extra = dict(
        iterations=limits.count, qp_solves=stageA.qp_solves + joint_stats["qp_solves"],
        osqp_iterations=stageA.osqp_iterations + joint_stats["osqp_iterations"],
        newton_steps=stageB.newton_steps, gap=float(gap), cycles=cycles,
        working_rows=int(stageA.W.sum()) if stageA.W is not None else 0,
    )
    if status == SolveStatus.OPTIMAL and pb.C and float(-(pb.G @ q).min()) > feas_abs:
        status = SolveStatus.INACCURATE
    failed = joint_stats.get("failed") or stageA.failed
    if status == SolveStatus.INACCURATE and failed is not None:
        status = failed  # an inner OSQP failure is what stopped progress: say which
    if failed is not None:
        extra["osqp_failure"] = failed.value
    return status, q, mu, extra


def _project_feasible(pb: _Problem, q, S):
    """Euclidean projection of q (support S) onto the cone rows, pattern by pattern, via NNLS.

    The projection of q_p onto {M x >= 0} is q_p + M^T lam with lam = argmin_{lam >= 0}
    ||q_p + M^T lam|| (its dual); the rows with lam > 0 are linearly independent (Lawson-Hanson
    keeps its passive set independent) and are returned as the initial tight set E. Rows enter
    the NNLS only when violated or nearly tight, and the check repeats until none is violated.
    """
    q = q.copy()
    E = np.zeros(pb.C, dtype=bool)
    gq = pb.G @ q
    for p in np.unique(np.flatnonzero(S) // pb.m):
        groups = _groups_of_pattern(pb, p)
        groups = groups[S[groups]]
        cols = pb.cols(groups)
        rows = pb.pattern_rows(p, groups)
        scale = pb.row_norm[rows] * max(float(np.linalg.norm(q[cols])), 1e-300)
        gp = gq[rows]
        if (gp >= 0).all():
            continue
        Mfull = pb.G[rows][:, cols]
        cand = gp <= 1e-6 * scale
        x = q[cols]
        for _ in range(20):
            M = Mfull[np.flatnonzero(cand)].toarray()
            lam, _ = nnls(M.T, -q[cols])
            x = q[cols] + M.T @ lam
            gx = Mfull @ x
            viol = (gx < -1e-13 * scale) & ~cand
            if not viol.any():
                break
            cand |= viol
        else:
            # rows kept joining (a warm start from another pattern set can violate many):
            # the projection with every row of the pattern
            cand[:] = True
            lam, _ = nnls(Mfull.toarray().T, -q[cols], maxiter=50 * Mfull.shape[0])
            x = q[cols] + Mfull.T @ lam
        q[cols] = x
        E[rows[np.flatnonzero(cand)[lam > 0]]] = True
    return q, E


def _joint_round(pb: _Problem, q, S, cand, mu, eps, deadline, stats):
    """One sequential-QP round with OSQP over S and the candidate groups (a joint move).

    Model of ||q_g||: beta * (t_g + ||(I - u u^T) q_g||^2 / (2 eta_g)) with t_g >= 0,
    t_g >= u^T q_g (the Newton model with an exact kink at 0); u_g = q_g/||q_g|| on S, and for a
    candidate the direction of its certificate vector A_g^T v + (G^T mu)_g projected on its
    first-layer cone. Rows: those tight at q plus, lazily, any the QP solution violates.
    Returns (q, S) after a line search on F, or None when no decrease was found.
    """
    import osqp

    d, beta = pb.d, pb.beta
    v = pb.y - pb.A @ q
    Cg = (pb.A.T @ v + pb.G.T @ mu).reshape(pb.ng, d)
    groups = np.flatnonzero(S | cand)
    k = groups.size
    cols = pb.cols(groups)
    Qs = q[cols].reshape(k, d)
    nr = np.linalg.norm(Qs, axis=1)
    U = np.zeros((k, d))
    eta = np.zeros(k)
    scale_q = max(float(nr.max()), 1e-300)
    for a, g in enumerate(groups):
        if nr[a] > 0:
            U[a], eta[a] = Qs[a] / nr[a], nr[a]
        else:
            M = pb.block1(g)
            lam, _ = nnls(M.T, -Cg[g])
            w = Cg[g] + M.T @ lam
            U[a] = w / max(float(np.linalg.norm(w)), 1e-300)
            eta[a] = 1e-2 * scale_q if nr.max() > 0 else 1.0
    As = pb.A_dense[:, cols]
    H = As.T @ As
    delta = 1e-10 * max(float(np.trace(H)) / max(k * d, 1), 1e-300)
    B = beta / eta[:, None, None] * (np.eye(d)[None] - U[:, :, None] * U[:, None, :]) + delta * np.eye(d)[None]
    H = H + sla.block_diag(*B)
    Pm = sp.triu(sp.block_diag([sp.csc_matrix(H), sp.csc_matrix((k, k))]), format="csc")
    lin = np.r_[-(As.T @ pb.y) - delta * q[cols], np.full(k, beta)]
    Ut = sp.csr_matrix((-U.ravel(), (np.repeat(np.arange(k), d), np.arange(k * d))), shape=(k, k * d))
    Ik = sp.identity(k, format="csr")
    Gs = pb.G[:, cols].tocsr()
    touch = np.diff(Gs.indptr) > 0
    gq0 = Gs @ q[cols]
    W = touch & (gq0 <= 1e-9 * pb.row_norm * scale_q)
    x0 = np.r_[q[cols], np.maximum(0.0, np.einsum("kd,kd->k", U, Qs))]
    res = None
    for _ in range(30):
        Wi = np.flatnonzero(W)
        Acon = sp.vstack([sp.hstack([sp.csr_matrix((k, k * d)), Ik]), sp.hstack([Ut, Ik]),
                          sp.hstack([Gs[Wi], sp.csr_matrix((Wi.size, k))])], format="csc")
        nrow = Acon.shape[0]
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise _Limit(SolveStatus.TIME_LIMIT)
        solver = osqp.OSQP()
        solver.setup(Pm, lin, Acon, np.zeros(nrow), np.full(nrow, np.inf), verbose=False,
                     eps_abs=eps, eps_rel=eps, polishing=True, max_iter=10000,
                     time_limit=max(remaining, 1e-3))
        solver.warm_start(x=x0)
        res = solver.solve(raise_error=False)
        stats["qp_solves"] += 1
        stats["osqp_iterations"] += int(res.info.iter)
        status = STATUS_MAP.get(osqp.SolverStatus(res.info.status_val).name, SolveStatus.FAILED)
        if status == SolveStatus.TIME_LIMIT:
            raise _Limit(SolveStatus.TIME_LIMIT)
        if status not in _USABLE_QP or res.x is None or not np.all(np.isfinite(res.x)):
            stats["failed"] = status if status not in _USABLE_QP else SolveStatus.NUMERICAL_ERROR
            return None
        x0 = res.x
        gq = Gs @ res.x[: k * d]
        viol = touch & ~W & (gq < -10 * eps * pb.row_norm * scale_q)
        if not viol.any():
            break
        W |= viol
    q_qp = np.zeros(pb.N)
    q_qp[cols] = res.x[: k * d]
    dq = q_qp - q
    f0 = pb.F(q)
    step = 1.0
    while step > 1e-6:
        if pb.F(q + step * dq) < f0:
            q_new = q + step * dq
            nr_new = pb.norms(q_new)
            S_new = nr_new > 1e-9 * max(float(nr_new.max()), 1e-300)
            q_new.reshape(pb.ng, d)[~S_new] = 0.0
            return q_new, S_new
        step *= 0.5
    return None


def _enter(pb: _Problem, q, S, E, v, bound, max_enter=8):
    """Move zero groups into the support along their steepest feasible directions.

    For a zero group g the best unit direction that keeps every tight row of its pattern
    feasible is the projection of c_g = A_g^T v onto that cone (NNLS); it decreases F iff its
    norm exceeds beta. The largest few move together (one-dimensional step lengths, then a
    backtracking line search with a ratio test on every row). Returns (q, S) or None.
    """
    d, beta = pb.d, pb.beta
    c_all = (pb.A.T @ v).reshape(pb.ng, d)
    gq = pb.G @ q
    slack_scale = pb.group_slack_scale(q)
    cand = []
    for g in np.flatnonzero(~S & ~pb.dead):
        p = g // pb.m
        M = pb.block1(g)
        if pb.two_layer_rows:
            r2 = pb.rows2(p)
            # nearly tight rows count as tight: a move that they stop after 1e-9 is no move
            r2 = r2[gq[r2] <= 1e-8 * slack_scale[r2]]
            if r2.size:
                M = np.vstack([M, pb.G[r2][:, g * d : (g + 1) * d].toarray()])
        lam, _ = nnls(M.T, -c_all[g])
        a = c_all[g] + M.T @ lam
        b = float(np.linalg.norm(a))
        if b > beta * (1 + 1e-9):
            cand.append((b, g, a / b))
    if not cand:
        return None
    cand.sort(key=lambda t: -t[0])
    dq = np.zeros(pb.N)
    entered = np.zeros(pb.ng, dtype=bool)
    for b, g, a in cand[:max_enter]:
        Aa = pb.A[:, g * d : (g + 1) * d] @ a
        curv = float(Aa @ Aa)
        if curv <= 0:
            continue
        dq[g * d : (g + 1) * d] = (b - beta) / curv * a
        entered[g] = True
    if not entered.any():
        return None
    gd = pb.G @ dq
    # rows the projection keeps feasible can read -1e-17: only clear decreases limit the step
    neg = gd < -1e-12 * pb.row_norm * float(np.abs(dq).max())
    alpha = 1.0
    if neg.any():
        alpha = min(1.0, float(np.min(np.maximum(gq[neg], 0.0) / -gd[neg])))
    f0 = pb.F(q)
    while alpha > 1e-6:
        if pb.F(q + alpha * dq) < f0:
            break
        alpha *= 0.5
    if alpha <= 1e-6:
        return None  # blocked at once: the joint QP step has to move these groups
    q = q + alpha * dq
    return q, S | entered


def _release(pb: _Problem, q, S, E, v, eq_res):
    """Tight rows to release: in each pattern whose nonnegative fit misses stationarity, the rows
    whose least-squares multipliers are negative."""
    d, beta = pb.d, pb.beta
    # only a real miss of stationarity: the NNLS fit itself leaves ~1e-8 beta behind
    bad = np.flatnonzero(S & (eq_res > 1e-6 * beta))
    out = []
    if bad.size == 0:
        return np.zeros(0, dtype=np.int64)
    c_all = (pb.A.T @ v).reshape(pb.ng, d)
    nr = pb.norms(q)
    for p in np.unique(bad // pb.m):
        groups = _groups_of_pattern(pb, p)
        groups = groups[S[groups]]
        rows = pb.pattern_rows(p, groups)
        rows = rows[E[rows]]
        if rows.size == 0:
            continue
        cols = pb.cols(groups)
        Mt = pb.G[rows][:, cols].toarray().T
        b = (beta * q[cols].reshape(-1, d) / nr[groups, None] - c_all[groups]).ravel()
        lam = np.linalg.lstsq(Mt, b, rcond=None)[0]
        neg = lam < -1e-12 * max(float(np.abs(lam).max()), 1e-300)
        out.append(rows[neg])
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


BACKEND = Backend.from_function(
    "osqp", solve_osqp,
    Capabilities(warm_start=True, multipliers=True, devices=("cpu",), max_cone_entries=None, exact=False),
    "OSQP quadratic programs, an exact face polish and a duality-gap certificate",
)
