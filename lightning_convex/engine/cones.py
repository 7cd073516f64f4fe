"""Projection onto the row cones of the restricted program, with the projection's multipliers.

Row i of pattern p constrains the m pre-activations e = (X q_p1 .. X q_pm)_i to

    C_ip = { e :  S1_j e_j >= 0 (j = 1..m),   S2 sum_j D1_j e_j >= 0 }

(S1_j = s_pj (2 D1_pj,i - 1), S2 = sig_p (2 D2_p,i - 1); MATH.md section 3; depth 2 has no
second-layer row). The projection of z onto C_ip is z + S1 mu1 + S2 D1 mu2 with multipliers
mu1, mu2 >= 0 (its KKT conditions), so a splitting method that projects rows onto their cones
holds valid cone multipliers at every iterate (MATH.md section 9).

In e' = S1 e the set is {e' >= 0, b . e' >= 0} with b = S2 D1 S1 in {-1, 0, 1}^m, and the
projection of z' = S1 z is relu(z' + nu b) for the smallest nu >= 0 with b . relu(z' + nu b) >= 0:
nu = 0 when relu(z') already satisfies the row, else the root of a nondecreasing piecewise
linear function of nu, found exactly from its sorted breakpoints.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch


def _second_layer_shift(zp: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """The smallest nu >= 0 with h(nu) = b . relu(zp + nu b) >= 0, for rows with h(0) = h0 < 0.

    h is piecewise linear and nondecreasing: a term with b = +1 switches on at nu = -zp (slope
    +1 after), a term with b = -1 switches off at nu = zp (slope -1 after).
    """
    big = torch.finfo(zp.dtype).max
    on_plus = (b > 0) & (zp > 0)
    on_minus = (b < 0) & (zp > 0)
    slope0 = (on_plus.sum(dim=-1) + on_minus.sum(dim=-1)).to(zp.dtype)
    kinks = torch.where(((b > 0) & (zp <= 0)) | on_minus, (b * -zp).abs(), torch.full_like(zp, big))
    kinks = torch.where(b == 0, torch.full_like(zp, big), kinks)
    order = torch.argsort(kinks, dim=-1)
    T = torch.gather(kinks, -1, order)
    dslope = torch.gather(torch.where(b > 0, 1.0, -1.0).to(zp.dtype), -1, order)
    finite = T < big
    slope_after = slope0[..., None] + torch.cumsum(torch.where(finite, dslope, torch.zeros_like(dslope)), dim=-1)
    slope_before = torch.cat([slope0[..., None], slope_after[..., :-1]], dim=-1)
    T_prev = torch.cat([torch.zeros_like(T[..., :1]), T[..., :-1]], dim=-1)
    H = h0[..., None] + torch.cumsum(torch.where(finite, slope_before * (T - T_prev), torch.zeros_like(T)), dim=-1)
    hit = finite & (H >= 0)
    first = torch.where(hit.any(dim=-1), hit.to(torch.int64).argmax(dim=-1), finite.sum(dim=-1))
    k = (first - 1).clamp_min(0)[..., None]
    has_prev = first > 0
    t_start = torch.where(has_prev, torch.gather(T, -1, k)[..., 0], torch.zeros_like(h0))
    h_start = torch.where(has_prev, torch.gather(H, -1, k)[..., 0], h0)
    slope = torch.where(has_prev, torch.gather(slope_after, -1, k)[..., 0], slope0)
    nu = t_start - h_start / slope.clamp_min(torch.finfo(zp.dtype).tiny)
    # the root lies before the first breakpoint where h >= 0 (rounding may push it past)
    t_hit = torch.gather(T, -1, first.clamp_max(T.shape[-1] - 1)[..., None])[..., 0]
    nu = torch.where(hit.any(dim=-1), torch.minimum(nu, t_hit), nu)
    return nu.clamp_min(0)


def row_multipliers(zp: torch.Tensor, b: Optional[torch.Tensor]):
    """The projection multipliers in e' = S1 e coordinates: (mu1 (..., m), mu2 (...) or None)
    for the rows zp = S1 z with b = S2 D1 S1 (``None``: depth 2). The projection of z is
    z + S1 mu1 + S2 D1 mu2."""
    if b is None:
        return torch.relu(-zp), None
    h0 = (b * torch.relu(zp)).sum(dim=-1)
    need = h0 < 0
    nu = torch.zeros_like(h0)
    if bool(need.any()):
        idx = need.nonzero(as_tuple=True)
        nu = nu.index_put(idx, _second_layer_shift(zp[idx], b[idx], h0[idx]))
    return torch.relu(-(zp + nu[..., None] * b)), nu


def project_rows(Z: torch.Tensor, S1: torch.Tensor, D1f: torch.Tensor, S2: Optional[torch.Tensor]
                 ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Project every row of Z (..., m) onto its cone; returns (projection, mu1, mu2).

    ``S1`` and ``D1f`` have Z's shape, ``S2`` has Z's shape without the last axis (``None``:
    depth 2). The projection equals Z + S1 mu1 + S2 D1 mu2 with mu1, mu2 >= 0.
    """
    b = None if S2 is None else S2[..., None] * D1f * S1
    mu1, mu2 = row_multipliers(S1 * Z, b)
    E = Z + S1 * mu1
    if mu2 is not None:
        E = E + (S2 * mu2)[..., None] * D1f
    return E, mu1, mu2
