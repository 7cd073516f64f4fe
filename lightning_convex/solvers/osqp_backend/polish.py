"""Stage 2: the exact polish of a smoothed point, and its certificate.

A smoothed iterate (:mod:`.smoothing`) at small e names the support S (the groups much larger than
e; the others sit at O(e)) and, through its small slacks, the face: the cone rows tight at the
optimum. On S the group norms are smooth, so the restricted problem

    minimize F(q)  over q with q_g = 0 off S,  G q >= 0

is smooth with linear constraints, and an active-set method solves it to rounding:

1. Newton on the face {G_E q = 0} (:class:`.face.FaceNewton`: null-space bases per pattern, so
   dependent tight rows cost nothing; rows that block a step join E).
2. When the face's stationary point is not a KKT point (no mu >= 0 on E gives stationarity), the
   residual rho = grad - M^T lam of the NNLS lam = argmin_{lam >= 0} ||M^T lam - grad|| (M: the rows
   of E, per pattern) is the steepest descent direction in the tangent cone {G_E d >= 0}: by the
   NNLS optimality conditions G_E (-rho) >= 0 and grad . (-rho) = -||rho||^2. A step along -rho
   (exact minimiser of the quadratic model, ratio test on the rows outside E, then Armijo)
   lowers F and releases the rows it leaves; this is degenerate-safe, unlike dropping the rows
   whose least-squares multipliers are negative (with dependent tight rows those are not unique).

Then the multipliers are fitted and the MATH.md section 5 bound is computed (:mod:`.multipliers`).
Every polish iterate is exactly feasible (a projection starts it, the ratio tests keep it), so
F(q) is an upper bound and the bound a lower bound whatever happens. A polish that stops with the
gap open (a zero group whose bound exceeds beta must enter, or the face was wrongly named) hands
back its best point; the smoothed steps then continue at a smaller e.
"""

from __future__ import annotations

from dataclasses import dataclass

import time

import numpy as np

from .face import FaceNewton
from .limits import Limits
from .multipliers import certificate, fit_multipliers
from .problem import Problem, nnls
from .projection import project_feasible

#: rows of S-groups whose slack at the smoothed point is at most this (relative to ||row|| ||q||)
#: start on the face
FACE_SLACK = 1e-7
ACTIVE_SLACK = 1e-4
#: groups at most this fraction of the largest when S is solved leave S (they head for 0)
SHRUNK = 1e-7
#: active-set rounds (face solve, then a tangent-cone step) of one polish
MAX_ROUNDS = 30
#: a tangent-cone step whose predicted decrease is below this times F counts as stationary
STATIONARY = 1e-15


@dataclass
class Polished:
    """A polish outcome: feasible q, multipliers, F, lower bound and relative gap, support size."""

    q: np.ndarray
    mu: np.ndarray
    F: float
    bound: float
    gap: float
    support: int


def polish(pb: Problem, face: FaceNewton, q: np.ndarray, S: np.ndarray, active, tol: float,
           limits: Limits, verbose: bool = False, max_rounds: int = MAX_ROUNDS) -> Polished:
    """Solve the program restricted to S from q (face Newton plus tangent-cone steps), certify.

    ``active`` (bool per row, or None): the rows the smoothed QP's multipliers call active; they
    start on the face when they are nearly tight (relative slack <= ACTIVE_SLACK), the others
    only when their slack is at rounding level (FACE_SLACK). ``max_rounds``: the most
    active-set rounds (face solve, then a tangent-cone step) before the certificate."""
    q, S, E = start_face(pb, q, S, active)
    rounds = 0
    for rounds in range(1, max_rounds + 1):
        limits.check_time()
        q, S, E = face.solve(q, S, E, limits)
        moved = tangent_step(pb, q, S, E)
        if moved is None:
            # a group that the steps shrink towards 0 reaches it only in the limit (the norm's
            # curvature grows as it shrinks): take it out, and solve again if it was not alone
            nr = pb.norms(q)
            shrunk = S & (nr <= SHRUNK * float(nr.max(initial=0.0)))
            if not shrunk.any():
                break
            q.reshape(pb.ng, pb.d)[shrunk] = 0.0
            S = S & ~shrunk
            E = E & pb.reading_rows(S)
            q, S, E = face.enter(q, S, E)
            continue
        q, E = moved
    # stationary on S (or out of rounds): the multipliers and the certificate, once
    v = pb.y - pb.A @ q
    mu, _ = fit_multipliers(pb, q, S, E, v)
    F, lower, gap, _ = certificate(pb, q, mu)
    if verbose:
        print(f"[osqp] polish: rounds={rounds} F={F:.14g} gap={gap:.2e} |S|={int(S.sum())} |E|={int(E.sum())} newton={face.newton_steps} "
              f"t={time.perf_counter():.2f}")
    return Polished(q, mu, F, lower, gap, int(S.sum()))


def start_face(pb: Problem, q: np.ndarray, S: np.ndarray, active):
    """(q, S, E) to start from: q zero off S and projected onto the cones (groups the
    projection sends to 0 leave S), E its tight rows and the active rows that are nearly tight."""
    q = q.copy()
    q.reshape(pb.ng, pb.d)[~S] = 0.0
    q, E = project_feasible(pb, q, S)
    S = S & (pb.norms(q) > 0)
    E &= pb.reading_rows(S)
    E |= pb.tight_rows(q, S, rel=FACE_SLACK)
    if active is not None:
        E |= active & pb.tight_rows(q, S, rel=ACTIVE_SLACK)
    return q, S, E


def tangent_step(pb: Problem, q: np.ndarray, S: np.ndarray, E: np.ndarray):
    """One step along the steepest descent direction of the tangent cone of E (on S), or None
    when q is stationary there. Returns (q, E) with the rows the step left dropped from E and
    the rows that blocked it added."""
    d, beta = pb.d, pb.beta
    grad = pb.A.T @ (pb.A @ q - pb.y)
    nr = pb.norms(q)
    U = np.zeros((pb.ng, d))
    U[S] = q.reshape(pb.ng, d)[S] / nr[S, None]
    grad += beta * U.ravel()
    step = np.zeros(pb.N)
    for p in np.unique(np.flatnonzero(S) // pb.m):
        groups = pb.pattern_groups(p)
        groups = groups[S[groups]]
        cols = pb.cols(groups)
        rows = pb.pattern_rows(p, groups)
        rows = rows[E[rows]]
        g = grad[cols]
        if rows.size:
            M = pb.block(p, groups, rows)
            lam, _ = nnls(M.T, g)
            g = g - M.T @ lam
        step[cols] = -g
    # exact minimiser of the quadratic model along the step (norm curvature (I - u u')/||q||)
    Ad = pb.A @ step
    D = step.reshape(pb.ng, d)
    radial = np.einsum("gd,gd->g", U, D)
    curv = float(Ad @ Ad) + beta * float(
        ((np.einsum("gd,gd->g", D, D) - radial ** 2)[S] / nr[S]).sum())
    slope = -float(step @ step)
    alpha = -slope / curv if curv > 0 else 1.0
    f0 = pb.F(q)
    if -0.5 * slope * alpha <= STATIONARY * f0:
        return None  # the model's best decrease along the step is rounding
    gq, gd = pb.G @ q, pb.G @ step
    reads = pb.reading_rows(S)
    block = reads & ~E & (gd < 0)
    alpha_max = np.inf
    if block.any():
        ratios = np.maximum(gq[block], 0.0) / -gd[block]
        alpha_max = float(ratios.min())
    alpha = min(alpha, alpha_max)
    while alpha > 1e-16 and pb.F(q + alpha * step) > f0 + 1e-4 * alpha * slope:
        alpha *= 0.5
    if alpha <= 1e-16:
        return None
    q_new = q + alpha * step
    scale = pb.group_slack_scale(q_new)
    # E keeps the rows the step did not lift off; blocking rows (slack ~ 0 now) join
    E_new = reads & (pb.G @ q_new <= 1e-12 * np.maximum(scale, 1e-300)) & (E | block)
    return q_new, E_new
