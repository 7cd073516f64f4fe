"""Exact refinement of the pattern bounds by cutting planes (MATH.md section 5).

For one pattern p, lambda_p(v) = max { g_p . q : q in cone_p, sum_j ||q_j|| <= 1 } (g_p = A_p^T v)
is a small second-order cone program in m d' variables, but with n m cone rows. Cutting planes
keep it small whatever n: solve it (Clarabel) with the cone rows of a few rows only, add the
rows whose cone constraints the maximiser violates, and repeat until it violates none. The
multipliers of the rows kept are cone multipliers mu >= 0 for pattern p, so every round gives a
valid B_p (:mod:`lightning_convex.duality`), and the last one equals lambda_p(v).

Only the patterns whose B_p limits the dual scaling are refined, largest first
(:func:`refinement_floor`); once one is exact, the others need not go below it. The rows of a
pattern are seeded with those that carry the most fitted multiplier (:func:`seed_rows`).
"""

from __future__ import annotations

import math
from typing import List, NamedTuple, Optional, Tuple

import clarabel
import numpy as np
import scipy.sparse as sp
import torch

from ..program import RestrictedProgram
from ..rows import RowSync
from ..program import row_signs, row_weights
from .cone_rows import pattern_block
from .support import SupportRows, top_rows


class PlaneRows(NamedTuple):
    """The rows whose cone constraints one pattern's cutting-plane program holds, by global id.

    ids (k,) ascending, X (k, d'), D1 bool (k, m), D2 bool (k,) or None (depth 2).
    """

    ids: torch.Tensor
    X: torch.Tensor
    D1: torch.Tensor
    D2: Optional[torch.Tensor]


def refinement_floor(vy: float, vv: float, beta: float, branch_corr, path, contains) -> Tuple[float, float]:
    """(tau, rho_floor): below max(tau, rho_floor) a smaller max_p B_p cannot raise the bound.

    The dual scaling is c = min(v.y / ||v||^2, beta / max_p B_p): once max_p B_p <= tau =
    beta ||v||^2 / v.y, it no longer limits c. And every branch k of the network that lies in a
    cone of S gives a feasible q_k / R_k of its pattern's maximisation (unit path norm R_k), so
    max_p lambda_p(v) >= rho_floor = max_k (v . f_k) / R_k (``branch_corr`` = v . f_k, ``path`` =
    R_k, ``contains``: the branches in S).
    """
    tau = beta * vv / vy if vy > 0 else float("inf")
    inside = contains & (path > 0)
    rho_floor = float((branch_corr[inside] / path[inside]).max()) if bool(inside.any()) else -float("inf")
    return tau, rho_floor


def seed_rows(rows: SupportRows, mu1, mu2, m: int, d: int) -> List[PlaneRows]:
    """Per pattern of a fitted block, the rows carrying the most multiplier (at most 2 m d' + 8,
    about the number of rows active at a maximiser) with a positive multiplier, ordered by id."""
    mass = mu1.sum(dim=2) + (mu2 if mu2 is not None else 0)
    r0 = min(mass.shape[1], 2 * m * d + 8)
    top = torch.topk(mass, r0, dim=1).indices
    seeds = []
    for i in range(mass.shape[0]):
        pick = top[i][mass[i, top[i]] > 0]
        pick = torch.sort(pick).values
        Xr = rows.X[pick] if rows.shared else rows.X[i, pick]
        seeds.append(PlaneRows(rows.ids[i, pick], Xr, rows.D1[i, pick],
                               None if rows.D2 is None else rows.D2[i, pick]))
    return seeds


def _socp(g, Xr, S1r, D1r, S2r, m: int, d: int):
    """Clarabel data of max sum_j g_j . q_j s.t. sum_j t_j <= 1, ||q_j|| <= t_j and the cone rows
    of the rows Xr (k, d'). Variables (q (m d'), t (m)); returns (c, A, b, nonnegative rows)."""
    nq = m * d
    rows, cols, vals, b = [], [], [], []
    cvec = np.zeros(nq + m)
    cvec[:nq] = -g.reshape(-1)
    # sum_j t_j <= 1
    rows.append(np.zeros(m, dtype=np.int64))
    cols.append(nq + np.arange(m))
    vals.append(np.ones(m))
    b.append(np.ones(1))
    k = Xr.shape[0]
    n1 = 0
    if k:
        # first-layer rows (i, j): -S1_ij x_i on q_j
        rid = 1 + np.arange(k * m).reshape(k, m)
        R = np.broadcast_to(rid[:, :, None], (k, m, d))
        C = np.broadcast_to((np.arange(m)[:, None] * d + np.arange(d)[None, :])[None], (k, m, d))
        V = -S1r[:, :, None] * Xr[:, None, :]
        rows.append(R.ravel()), cols.append(C.ravel()), vals.append(V.ravel())
        b.append(np.zeros(k * m))
        n1 = k * m
        if S2r is not None:
            # second-layer rows i: -S2_i sum_j D1_ij x_i on q_j
            rid2 = 1 + n1 + np.arange(k)
            V2 = -(S2r[:, None, None] * D1r[:, :, None]) * Xr[:, None, :]
            R2 = np.broadcast_to(rid2[:, None, None], (k, m, d))
            keep = np.broadcast_to(D1r[:, :, None] > 0, (k, m, d))
            rows.append(R2[keep]), cols.append(C[keep]), vals.append(V2[keep])
            b.append(np.zeros(k))
            n1 += k
    n_nonneg = 1 + n1
    # second-order cones (t_j, q_j)
    j = np.arange(m)
    rows.append(n_nonneg + j * (d + 1)), cols.append(nq + j), vals.append(-np.ones(m))
    R = n_nonneg + (j[:, None] * (d + 1) + 1 + np.arange(d)[None, :])
    C = j[:, None] * d + np.arange(d)[None, :]
    rows.append(R.ravel()), cols.append(C.ravel()), vals.append(-np.ones(m * d))
    b.append(np.zeros(m * (d + 1)))
    A = sp.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_nonneg + m * (d + 1), nq + m),
    )
    return cvec, A, np.concatenate(b), n_nonneg


def solve_cutting_plane(g, Xr, S1r, D1r, S2r, m: int, d: int, tol: float = 1e-10):
    """Solve :func:`_socp` (numpy inputs); (q (m, d'), mu1 (k, m), mu2 (k,) or None), or None when
    Clarabel fails (a failure only means no refinement)."""
    cvec, A, b, n_nonneg = _socp(g, Xr, S1r, D1r, S2r, m, d)
    cones = [clarabel.NonnegativeConeT(n_nonneg)] + [clarabel.SecondOrderConeT(d + 1)] * m
    opts = clarabel.DefaultSettings()
    opts.verbose = False
    opts.max_iter = 200
    opts.tol_gap_abs = opts.tol_gap_rel = opts.tol_feas = tol
    try:
        result = clarabel.DefaultSolver(sp.csc_matrix((A.shape[1], A.shape[1])), cvec, A, b, cones, opts).solve()
    except Exception:  # a solver crash only means no refinement
        return None
    if str(result.status) not in ("Solved", "AlmostSolved"):
        return None
    x = np.asarray(result.x, dtype=np.float64)
    z = np.maximum(np.asarray(result.z, dtype=np.float64), 0.0)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(z))):
        return None
    k = Xr.shape[0]
    q = x[: m * d].reshape(m, d)
    mu1 = z[1 : 1 + k * m].reshape(k, m)
    mu2 = z[1 + k * m : n_nonneg] if S2r is not None else None
    return q, mu1, mu2


@torch.no_grad()
def refine_bounds(program: RestrictedProgram, g, B, floor: float, seeds, sync: RowSync, rounds: int,
                  add_rows: int, tol: float = 1e-9) -> int:
    """Cutting-plane refinement of the patterns of ``program`` whose B_p exceeds ``floor``.

    Patterns are refined one at a time, largest B_p first, each by its own small Clarabel
    programs (one block program for all patterns would factorise a much larger matrix).
    ``g`` (P, m, d') is A^T v over all processes' rows; ``seeds`` maps a pattern to its initial
    :class:`PlaneRows` (absent: none). At most ``rounds`` rounds per pattern, each adding up to
    ``add_rows`` rows violated by more than ``tol`` (relative to ||x_i||). Once a pattern's
    maximiser is feasible its B_p is lambda_p(v), and no other pattern needs to go below it.
    Updates ``B`` in place and returns the number of patterns refined.
    """
    if not math.isfinite(floor):
        return 0
    Xf, S = program.features, program.patterns
    dtype, device = Xf.dtype, Xf.device
    P, n, m = S.D1.shape
    d = Xf.shape[1]
    ids_local = sync.row_ids(n, device)
    xnorm = Xf.norm(dim=1).clamp_min(1e-300)
    none = PlaneRows(torch.zeros(0, dtype=torch.long, device=device), Xf.new_zeros(0, d),
                     torch.zeros(0, m, dtype=torch.bool, device=device),
                     None if S.D2 is None else torch.zeros(0, dtype=torch.bool, device=device))
    refined = 0
    for p in torch.argsort(B, descending=True).tolist():
        if float(B[p]) <= floor:
            break
        refined += 1
        ids, Xr, D1r, D2r = seeds.get(p, none)
        s, sig = S.s[p : p + 1], S.sig[p : p + 1]
        single = pattern_block(program, slice(p, p + 1))
        for _ in range(rounds):
            D1f, S1, S2 = row_signs(D1r[None], None if D2r is None else D2r[None], s, sig, dtype)
            solved = solve_cutting_plane(g[p].cpu().numpy(), Xr.cpu().numpy(), S1[0].cpu().numpy(),
                                         D1f[0].cpu().numpy(), None if S2 is None else S2[0].cpu().numpy(),
                                         m, d)
            if solved is None:
                break
            q, mu1, mu2 = solved
            mu1 = torch.as_tensor(mu1, dtype=dtype, device=device)
            mu2 = None if mu2 is None else torch.as_tensor(mu2, dtype=dtype, device=device)
            W = row_weights(D1f, S1, S2, mu1[None], None if mu2 is None else mu2[None])[0]
            Bp = (g[p] + torch.einsum("kd,km->md", Xr, W)).norm(dim=1).max()
            if Bp < B[p]:
                B[p] = Bp
            if float(B[p]) <= floor:
                break
            # rows whose cone constraints the relaxed maximiser violates
            Q = torch.as_tensor(q, dtype=dtype, device=device)
            Q = Q / Q.norm(dim=1).sum().clamp_min(1e-300)
            R1, R2 = single.cone_rows(Q[None])
            viol = torch.relu(-R1).amax(dim=2)
            if R2 is not None:
                viol = torch.maximum(viol, torch.relu(-R2))
            viol = viol / xnorm[None]
            viol = torch.where(torch.isin(ids_local, ids)[None], torch.zeros_like(viol), viol)
            if float(sync.max(viol.amax(dim=1))[0]) <= tol:
                floor = max(floor, float(B[p]))  # B_p = lambda_p(v): a floor for the others
                break
            score, new = top_rows(sync, viol, ids_local[None], Xf, single.patterns.D1,
                                  single.patterns.D2, add_rows)
            good = score[0] > tol
            ids = torch.cat([ids, new.ids[0][good]])
            Xr = torch.cat([Xr, new.X[0][good]])
            D1r = torch.cat([D1r, new.D1[0][good]])
            if D2r is not None:
                D2r = torch.cat([D2r, new.D2[0][good]])
            order = torch.argsort(ids)
            ids, Xr, D1r = ids[order], Xr[order], D1r[order]
            D2r = None if D2r is None else D2r[order]
    return refined
