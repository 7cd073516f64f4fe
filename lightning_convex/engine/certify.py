"""The engine's certificates: the MATH.md section-5 bound during the iteration and at the end.

During the iteration (:func:`iterate_bound`) the bound is read off quantities the iteration
already has: v = y - A Z from its forward product and C = F^T (M v + S1 mu1 + S2 D1 mu2) from
one extra product, so that B_pj = ||(A^T v + G^T mu)_pj|| = ||sigma * C_pj|| (X^T W = V Sigma F^T W
with V orthonormal). The arithmetic after the products is float64 through
:func:`lightning_convex.duality.lower_bound`.

At the end (:func:`program_certificate`) everything is recomputed independently of the
whitening, in float64 on the program itself: Q = V Sigma^-1 Z, J(Q), its cone violation, and
:func:`lightning_convex.duality.program_bound` with the returned multipliers. That is the number
the Solution reports.

A first-order iterate violates cone rows slightly, and J of an infeasible point is not an upper
bound on OPT(S). :func:`repair` makes the returned point feasible by moving each violating
pattern towards a feasible reference point (the warm start; each pattern's rows are linear in
its own Q_p, so the smallest such move is a ratio test over the rows), or to zero where the
reference cannot help.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from ..duality import lower_bound, program_bound, relative_gap
from ..program import RestrictedProgram


@dataclass(frozen=True)
class Bound:
    """One certificate: J of the primal point, the section-5 lower bound, their relative gap,
    the relative cone violation of the primal point and max_p B_p / beta."""

    primal: float
    lower: float
    gap: float
    violation: float
    dual_ratio: float

    def as_dict(self) -> dict:
        return {"objective": self.primal, "lower_bound": self.lower, "gap": self.gap,
                "violation_rel": self.violation, "dual_ratio": self.dual_ratio}


def violation_scale(y: torch.Tensor, pred: torch.Tensor) -> float:
    """The unit a cone violation is measured in: max(||y||_inf, ||A Q||_inf) (as the torch backend)."""
    return max(float(y.abs().max()), float(pred.abs().max()), torch.finfo(torch.float64).tiny)


def iterate_bound(ops, check, beta: float) -> Bound:
    """The bound of an iterate from its :class:`~.admm.Check` (see the module docstring)."""
    y = ops.program.y.double()
    v = y - check.pred.double()
    J = 0.5 * float(v @ v) + beta * float(ops.group_norms(check.Z.double()).sum())
    B = float(ops.bound_norms(check.C.double()).max())
    lb = lower_bound(float(v @ y), float(v @ v), beta, B).value
    viol = max(0.0, -check.worst) / violation_scale(y, check.pred.double())
    return Bound(J, lb, relative_gap(J, lb), viol, B / beta)


def program_certificate(program: RestrictedProgram, Q: torch.Tensor, mu1: torch.Tensor,
                        mu2: Optional[torch.Tensor], bound_from: Optional[torch.Tensor] = None) -> Bound:
    """The certificate of (Q, mu) recomputed in float64 on ``program`` (module docstring).

    ``bound_from``: another dual point v to use instead of y - A Q (any v gives a valid bound).
    """
    p64 = program.with_dtype(torch.float64)
    Q = Q.to(device=p64.device, dtype=torch.float64)
    pred, R1, R2 = p64.forward(Q)
    v = p64.y - pred
    J = 0.5 * float(v @ v) + p64.beta * float(Q.norm(dim=2).sum())
    worst = float(R1.min()) if R1.numel() else 0.0
    if R2 is not None and R2.numel():
        worst = min(worst, float(R2.min()))
    mults = (mu1.to(p64.device, torch.float64), None if mu2 is None else mu2.to(p64.device, torch.float64))
    dual = v if bound_from is None else bound_from.to(p64.device, torch.float64)
    bound = program_bound(p64, dual, mults)
    viol = max(0.0, -worst) / violation_scale(p64.y, pred)
    return Bound(J, bound.value, relative_gap(J, bound.value), viol, bound.bound_max / p64.beta)


@torch.no_grad()
def repair(program: RestrictedProgram, Q: torch.Tensor, reference: Optional[torch.Tensor], budget: float):
    """A feasible point near Q if one is cheap: (Q', patterns moved), or (Q, 0) otherwise.

    Pattern p with violated rows either moves to (1 - t_p) Q_p + t_p R_p, R = ``reference``
    (feasible), with the smallest t_p that makes every row of p nonnegative (each row r is
    linear in Q_p: t_p = max over violated rows of -r(Q_p) / (r(R_p) - r(Q_p))), or becomes
    zero (always feasible), whichever gives the lower J, pattern by pattern (J of each choice
    follows from the patterns' shares of the prediction, which are linear in Q_p too). The
    result is kept only when J rises by at most ``budget`` (absolute): a blend whose ratio test
    is dominated by a row where the reference has almost no margin moves far. Float64.
    """
    p64 = program.with_dtype(torch.float64)
    Q = Q.to(device=p64.device, dtype=torch.float64)
    _, R1, R2 = p64.forward(Q)
    rows = torch.cat([R1.flatten(1)] + ([] if R2 is None else [R2]), dim=1)  # (P, n (m + 1))
    bad = rows < 0
    moved = bad.any(dim=1)
    if not bool(moved.any()):
        return Q, 0
    shares = p64.pattern_predictions(Q)
    norms = Q.norm(dim=2).sum(dim=1)
    pred = shares.sum(dim=0)
    J0 = 0.5 * float((p64.y - pred).square().sum()) + p64.beta * float(norms.sum())
    out = Q.clone()
    blend = torch.full((p64.P,), math.inf, dtype=torch.float64, device=p64.device)
    if reference is not None:
        Rf = reference.to(device=p64.device, dtype=torch.float64)
        _, S1, S2 = p64.forward(Rf)
        rise = torch.cat([S1.flatten(1)] + ([] if S2 is None else [S2]), dim=1) - rows
        ratio = torch.where(bad & (rise > 0), -rows / rise.clamp_min(torch.finfo(torch.float64).tiny),
                            torch.where(bad, math.inf, 0.0))
        # a little past the ratio, so that rounding in the blend keeps the rows >= 0
        blend = ratio.amax(dim=1) * (1 + 1e-9) + 1e-15
        ref_shares = p64.pattern_predictions(Rf)
    for p in torch.nonzero(moved).flatten().tolist():
        # option 0: Q_p = 0; option 1: the blend (when it exists)
        options = [(torch.zeros_like(Q[p]), torch.zeros_like(shares[p]))]
        t = float(blend[p])
        if t < 1:
            options.append(((1 - t) * Q[p] + t * Rf[p], (1 - t) * shares[p] + t * ref_shares[p]))
        values = []
        for Qp, share in options:
            r = p64.y - (pred - shares[p] + share)
            values.append(0.5 * float(r.square().sum()) + p64.beta * float(norms.sum() - norms[p] + Qp.norm(dim=1).sum()))
        Qp, share = options[min(range(len(options)), key=values.__getitem__)]
        out[p] = Qp
        pred = pred - shares[p] + share
        norms[p] = Qp.norm(dim=1).sum()
        shares[p] = share
    J = 0.5 * float((p64.y - pred).square().sum()) + p64.beta * float(norms.sum())
    if J - J0 > budget:
        return Q, 0
    return out, int(moved.sum())


#: the per-pattern multiplier scale is searched in [0, RESCALE_MAX] by golden sections
RESCALE_MAX = 4.0
RESCALE_STEPS = 60


def rescale_multipliers(ops, check, beta: float):
    """A dual refinement: each pattern's multipliers times the scale t_p >= 0 that minimises
    B_p(v, t_p mu_p) = max_j ||(A^T v)_pj + t_p (G^T mu)_pj|| (a convex function of t_p: the
    largest of m norms of affine functions), v = y - A Z fixed.

    First-order iterates get the direction of mu right before its size, so this lowers the
    bound's max_p B_p for one more product than the plain bound. Returns (Bound, mu1, mu2)
    with the rescaled multipliers (>= 0, so the bound stays valid).
    """
    y = ops.program.y.double()
    v = y - check.pred.double()
    w = ops.bound_weight.double()
    Cv = ops.adjoint(v.to(ops.dtype)).double() * w
    Cm = check.C.double() * w - Cv  # C = F^T (M v + G^T mu): the multipliers' part
    cc, cd, dd = (Cv * Cv).sum(dim=2), (Cv * Cm).sum(dim=2), (Cm * Cm).sum(dim=2)

    def B(t):  # (P,) the pattern bounds at scales t (P,)
        return (cc + 2 * t[:, None] * cd + (t * t)[:, None] * dd).clamp_min(0).sqrt().amax(dim=1)

    lo = torch.zeros(ops.P, dtype=torch.float64, device=Cv.device)
    hi = torch.full_like(lo, RESCALE_MAX)
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(RESCALE_STEPS):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        left = B(a) <= B(b)
        hi = torch.where(left, b, hi)
        lo = torch.where(left, lo, a)
    t = (lo + hi) / 2
    ones = torch.ones_like(t)
    t = torch.where(B(t) <= B(ones), t, ones)  # never worse than the multipliers as they are
    Bmax = float(B(t).max())
    J = 0.5 * float(v @ v) + beta * float(ops.group_norms(check.Z.double()).sum())
    lb = lower_bound(float(v @ y), float(v @ v), beta, Bmax).value
    viol = max(0.0, -check.worst) / violation_scale(y, check.pred.double())
    tw = t.to(check.mu1.dtype)
    mu1 = check.mu1 * tw[None, :, None]
    mu2 = None if check.mu2 is None else check.mu2 * tw[None, :]
    return Bound(J, lb, relative_gap(J, lb), viol, Bmax / beta), mu1, mu2
