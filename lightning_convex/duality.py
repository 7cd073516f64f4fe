"""The duality core (MATH.md section 5): the one place the lower bound and the gap are computed.

The restricted program's dual is: maximise g(v) = v.y - 1/2 ||v||^2 subject to lambda_p(v) <= beta
for every pattern p. For ANY dual point v and ANY cone multipliers mu >= 0 (one per cone row),

    lambda_p(v) <= B_p(v, mu) := max_j || (A^T v + G^T mu)_pj ||_2           (:func:`pattern_bounds`)

so c v with c = clip(v.y / ||v||^2, 0, beta / max_p B_p) is dual feasible (:func:`dual_scale`) and

    g(c v) = c v.y - c^2 ||v||^2 / 2  <=  OPT(S)                              (:func:`lower_bound`)

whatever v and mu are: validity never depends on how they were found. Every solver's stopping
rule and every certificate goes through these functions, in float64. A gap that comes out
negative means an inexact or infeasible iterate, not a better-than-optimal point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch


@dataclass(frozen=True)
class DualBound:
    """A certified lower bound g(c v) on OPT(S).

    Attributes:
        value: g(c v), the lower bound (sum form, float64).
        scale: c, the dual-feasible scaling applied to v.
        bound_max: max_p B_p(v, mu), the dual constraint's left-hand side before scaling.
    """

    value: float
    scale: float
    bound_max: float


def dual_scale(vy: float, vv: float, beta: float, bound_max: float) -> float:
    """c = clip(v.y / ||v||^2, 0, beta / max_p B_p): the best dual-feasible multiple of v."""
    if vv <= 0:
        return 0.0
    c = vy / vv
    if bound_max > 0:
        c = min(c, beta / bound_max)
    return max(c, 0.0)


def dual_value(vy: float, vv: float, c: float) -> float:
    """g(c v) = c v.y - c^2 ||v||^2 / 2."""
    return c * vy - 0.5 * c * c * vv


def lower_bound(vy: float, vv: float, beta: float, bound_max: float) -> DualBound:
    """The section-5 bound from the sums v.y, ||v||^2 and max_p B_p (all float64 scalars)."""
    vy, vv, bound_max = float(vy), float(vv), float(bound_max)
    c = dual_scale(vy, vv, beta, bound_max)
    return DualBound(dual_value(vy, vv, c), c, bound_max)


def pattern_bounds(program, v: torch.Tensor, mu1: Optional[torch.Tensor] = None,
                   mu2: Optional[torch.Tensor] = None, sync=None) -> torch.Tensor:
    """B_p(v, mu) = max_j ||(A^T v + G^T mu)_pj|| for every pattern of ``program``, float64 (P,).

    ``mu1`` (P, n, m) and ``mu2`` (P, n) are cone multipliers (negative entries are clipped: any
    mu >= 0 is valid). ``sync`` (an object with ``sum``) adds the row shards of other processes
    before the norms are taken, so B is the full-data value.
    """
    if mu1 is not None:
        mu1 = mu1.clamp_min(0)
    if mu2 is not None:
        mu2 = mu2.clamp_min(0)
    c = program.adjoint(v, mu1, mu2).double()
    if sync is not None:
        c = sync.sum(c)
    return c.norm(dim=2).amax(dim=1)


def residual_bound(y: torch.Tensor, v: torch.Tensor, beta: float, bounds: torch.Tensor, sync=None) -> DualBound:
    """The section-5 bound for dual point v (n,) with pattern bounds B (P,), in float64."""
    y64, v64 = y.double(), v.double()
    sums = torch.stack([v64 @ y64, v64 @ v64])
    if sync is not None:
        sums = sync.sum(sums)
    bound_max = float(bounds.max()) if bounds.numel() else 0.0
    return lower_bound(float(sums[0]), float(sums[1]), beta, bound_max)


def program_bound(program, v: torch.Tensor, multipliers=None, sync=None) -> DualBound:
    """The section-5 bound of ``program`` at dual point v with ``multipliers`` (mu1, mu2) or None."""
    mu1, mu2 = multipliers if multipliers is not None else (None, None)
    bounds = pattern_bounds(program, v, mu1, mu2, sync=sync)
    return residual_bound(program.y, v, program.beta, bounds, sync=sync)


def relative_gap(primal: float, lower: float) -> float:
    """(primal - lower) / |primal|, with 0 / 0 = 0 and x / 0 = inf."""
    gap = primal - lower
    if primal != 0:
        return gap / abs(primal)
    return 0.0 if gap == 0 else math.inf
