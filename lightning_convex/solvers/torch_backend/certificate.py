"""The stopping rule both methods share: the MATH.md section 5 certificate (via
:mod:`lightning_convex.duality`) and the convergence test on it."""

from __future__ import annotations

from ...duality import lower_bound, pattern_bounds, relative_gap
from ...program import RestrictedProgram


def min_row(R1, R2) -> float:
    """min G Q from the first- and (depth 3) second-layer rows."""
    worst = float(R1.min()) if R1.numel() else 0.0
    if R2 is not None and R2.numel():
        worst = min(worst, float(R2.min()))
    return worst


def certificate(wp: RestrictedProgram, Q, mu1, mu2, y64, y_scale, pred=None, worst=None) -> dict:
    """Primal J, cone violation, and the MATH.md section 5 lower bound from v = y - A Q and mu.

    ``pred`` (A Q) and ``worst`` (min G Q) may be passed when already computed.
    """
    if pred is None or worst is None:
        pred, R1, R2 = wp.forward(Q)
        worst = min_row(R1, R2)
    viol = max(0.0, -worst)
    v = y64 - pred.double()
    J = float(0.5 * v.square().sum() + wp.beta * Q.double().norm(dim=2).sum())
    bound = float(pattern_bounds(wp, v.to(wp.dtype), mu1, mu2).max())
    lb = lower_bound(v @ y64, v @ v, wp.beta, bound).value
    gap = relative_gap(J, lb)
    feas_scale = max(y_scale, float(pred.abs().max()))
    return {"primal": J, "lower_bound": lb, "gap": gap, "violation_rel": viol / feas_scale,
            "dual_infeasibility": bound / wp.beta - 1.0}


def converged(cert: dict, tol: float) -> bool:
    return cert["gap"] <= tol and cert["violation_rel"] <= tol
