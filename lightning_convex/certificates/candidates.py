"""The best section-5 bound among a few dual points sharing one set of multipliers.

Every method of :func:`~.certificate.certify` ends with dual points v_c (the exact solve's
residual, the engine's dual and primal residuals, the network's own rescaled residual) and cone
multipliers mu >= 0 over the rows of this process. For each point, the bound of MATH.md
section 5 is evaluated in float64 on the program itself (the original features, not a solver's
coordinates), with the multipliers of each pattern rescaled by the t_p >= 0 that minimises its
B_p(v, t_p mu_p) = max_j ||(A^T v)_pj + t_p (G^T mu)_pj|| (:func:`~lightning_convex.engine.certify.best_scales`;
any t_p >= 0 keeps mu valid). A^T v and G^T mu are two float64 products, so the rescaling costs
nothing more: B_p is the norm of their sum, the section-5 B_p(v, t mu) itself, and the bound is
:func:`lightning_convex.duality.lower_bound` of it.

Rows that feed no pattern's prediction term (M_pj,i = 0 for every p, j: no point of S predicts
anything there) enter no B_p, so v_i is free on them. The bound scales all of v by one c, which
is small while B_p is large; each point is therefore also scored with its free rows set to
y_i / c_B, c_B = beta / max_p B_p, so that they contribute their best, 1/2 y_i^2 each, to
g(c v) once the scaling binds (a row no point of S reaches costs every point 1/2 y_i^2), and
the better of the two is kept.
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch

from ..duality import DualBound, lower_bound
from ..engine.certify import best_scales
from ..engine.dual import row_counts
from ..program import RestrictedProgram
from ..rows import RowSync


class Choice(NamedTuple):
    """The chosen dual point: its bound, name, B_p per pattern (P,) and the multipliers used."""

    bound: DualBound
    name: str
    bounds: torch.Tensor
    multipliers: Optional[Tuple[torch.Tensor, Optional[torch.Tensor]]]


def pad_multipliers(multipliers, P: int):
    """(mu1, mu2) for the first P' <= P patterns, padded with zeros (no multipliers) to P."""
    mu1, mu2 = multipliers
    extra = P - mu1.shape[0]
    if extra <= 0:
        return mu1, mu2
    mu1 = torch.cat([mu1, mu1.new_zeros((extra,) + tuple(mu1.shape[1:]))])
    if mu2 is not None:
        mu2 = torch.cat([mu2, mu2.new_zeros((extra,) + tuple(mu2.shape[1:]))])
    return mu1, mu2


def best_of(program: RestrictedProgram, points: Sequence[Tuple[str, torch.Tensor]], multipliers,
            sync: RowSync) -> Choice:
    """The best bound over ``points`` [(name, v (n_local,))] with ``multipliers`` (mu1 (P, n, m),
    mu2 (P, n) or None) >= 0, or ``None`` for mu = 0. ``program`` is float64."""
    beta = program.beta
    P = program.P
    mu1 = mu2 = None
    if multipliers is not None:
        mu1, mu2 = pad_multipliers(multipliers, P)
        mu1 = mu1.to(program.device, torch.float64).clamp_min(0)
        mu2 = None if mu2 is None else mu2.to(program.device, torch.float64).clamp_min(0)
        Gm = sync.sum(program.cone_adjoint(mu1, mu2))
    else:
        Gm = None
    free = row_counts(program) == 0
    any_free = bool(sync.max(free.any().to(torch.float64).reshape(1)).item() > 0)
    y_free = torch.where(free, program.y.to(torch.float64), torch.zeros((), dtype=torch.float64))
    best = None
    for name, v in points:
        v = v.to(program.device, torch.float64)
        Av = sync.sum(program.predict_adjoint(v))
        if Gm is None:
            t = torch.ones(P, dtype=torch.float64, device=program.device)
            B = Av.norm(dim=2).amax(dim=1)
        else:
            t, _ = best_scales(Av, Gm)
            B = (Av + t[:, None, None] * Gm).norm(dim=2).amax(dim=1)  # B_p(v, t_p mu_p)
        B_max = float(B.max()) if P else 0.0
        completed = torch.where(free, y_free * (B_max / beta if B_max > 0 else 1.0), v)
        for w in (v, completed) if any_free else (v,):
            sums = sync.sum(torch.stack([w @ program.y, w @ w]))
            bound = lower_bound(float(sums[0]), float(sums[1]), beta, B_max)
            if best is None or bound.value > best[0].value:
                best = (bound, name, B, t)
    bound, name, B, t = best
    scaled = None
    if mu1 is not None:
        scaled = (mu1 * t[:, None, None], None if mu2 is None else mu2 * t[:, None])
    return Choice(bound, name, B, scaled)


def best_choice(choices: List[Choice]) -> Choice:
    """The choice with the largest bound (the first among equals)."""
    return max(choices, key=lambda c: c.bound.value)
