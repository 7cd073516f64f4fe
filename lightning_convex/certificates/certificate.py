"""Duality-gap certificates for a parallel ReLU network (MATH.md sections 5, 6 and 8).

:func:`certify` returns a :class:`Certificate`: the network's objective J(theta), a VALID lower
bound on OPT(S), the optimum of the restricted convex program over a pattern set S (MATH.md
section 3), their gap, and optionally the result of a search for strict descent directions
outside S (section 6).

The lower bound (section 5). For any v and any cone multipliers mu_p >= 0,

    lambda_p(v) <= B_p(v, mu_p) := max_j || c_pj ||,   c_p = A_p^T v + G_p^T mu_p,

so c * v with c = clip(v.y / ||v||^2, 0, beta / max_p B_p) is dual feasible and
g(c v) = c v.y - c^2 ||v||^2 / 2 <= OPT(S). Validity never depends on how mu (or v) was found;
the final B_p are recomputed in float64 from the mu that are used.

The dual point v (``dual_point="scaled"``): the residual y - sum_k alpha_k f_k(X) of the network
with each branch rescaled optimally (alpha >= 0, a K-variable quadratic; alpha = 1 at a
restricted optimum). Rescaling keeps every branch in its cone, and it makes v satisfy the dual
constraint along each branch's own direction, which the raw residual of a network still in
training can violate badly. Measured (n=2000, d=20, K=10, m=10, 300 Adam epochs, J = 15.76,
OPT(S) = 14.50): raw residual max_p B_p/beta = 13.9, lower bound 0.90; rescaled 1.57 and 11.16.
After a solve the solver's residual is tried too.

How mu is found, per pattern p (tight at the restricted optimum, batched on the device):

1. Support. With n <= ``support`` every row carries multipliers; otherwise the ``support`` rows
   with the largest projected gradient of sum_j ||c_pj||^2 at mu = 0 (the rows whose cone terms
   cancel most of A_p^T v outside the cone).
2. Fit (ADMM, :func:`_fit`). lambda_p(v) = max { A_p^T v . q : q in cone_p, sum_j ||q_j|| <= 1 }
   is split into q = p (p in the group ball) and E = X Q^T (every row of E in its cone): the
   q-step needs one Cholesky factor of I + r X^T X, the others are projections, and the
   multipliers of the row projections are cone multipliers mu >= 0, so every iterate gives a
   valid B_p; the best is kept. Measured at a restricted optimum (n=60, d'=5, m=3), max_p
   B_p/beta after 300 iterations: 1.07 (depth 3) and 1.008 (depth 2); 3000: 1.0009 and
   1.000002; accelerated projected gradient on the least squares in mu left 3.9 and 1.5 after
   300, and mu = 0 gives 26 and 18.
3. Refinement (``refine="auto"``: when m d' <= 2000). The same program is solved exactly by
   cutting planes with Clarabel: rows whose cone constraints the current maximiser violates are
   added until none is, so the programs stay small whatever n; their constraint multipliers are
   the best mu. Only patterns whose B_p limits the scaling are refined, largest first; once one
   is exact, the others need not go below it. Relative gap at the optimum: 1e-11 - 1e-10.
4. A solver's own multipliers (``solution=`` or ``multipliers=``) are evaluated as one more
   candidate; at the restricted optimum they are exact.

Every sum over rows goes through a :class:`RowSync`, so the same code certifies data split in
row shards over processes (the DDP callback): sums are all-reduced and the few rows a pattern's
support or refinement needs are gathered, making the result equal to the single-process one up
to floating-point summation order.

Scope (section 8): the gap bounds J(theta) - OPT(S), where S is the network's own active set,
a given set, plus any sampled patterns; ``scope`` says which. It is a global statement only when
S holds every hyperplane arrangement (``exhaustive=True``, the caller's claim).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np
import torch

from .._checks import check_beta, check_int
from ..duality import lower_bound as _dual_bound, relative_gap
from ..mapping import branch_path_norms
from ..model import ParallelReLU, float64_parameters, network_rows, regularizer
from ..patterns import PatternSet, concatenate, read_branches, sample_patterns
from ..rows import ROW_CHUNK, RowSync

__all__ = ["Certificate", "RowSync", "certify", "search_violations"]

#: Largest number of (pattern, row, neuron) entries materialised at once.
ENTRY_CHUNK = 1 << 23
#: Default number of support rows per pattern for the multiplier fit.
DEFAULT_SUPPORT = 4096


# ------------------------------------------------------------------------------------------------
# Result
# ------------------------------------------------------------------------------------------------
@dataclass
class Certificate:
    """A duality-gap certificate (MATH.md section 5), all values in the paper's sum form.

    Attributes:
        primal: J(theta) = 1/2 ||f(X) - y||^2 + beta R(theta), float64.
        lower_bound: a valid lower bound on OPT(S), the restricted optimum over the pattern set S.
        gap: primal - lower_bound, an upper bound on J(theta) - OPT(S) when the network lies in
            S (``contains_network``). Negative only through solver tolerances or a network that
            sits (within ``membership_tol``) outside its cones: an inexact iterate, never a
            better-than-optimal point.
        relative_gap: gap / primal (0 when both are 0).
        scope: the set S: ``"active set"``, ``"given set"``, ``"... + N sampled"``, or
            ``"global"`` (only with ``exhaustive=True``).
        num_patterns: |S|.
        patterns: the set S itself (the network's patterns or the given set, then the sampled
            ones), on the rows certified, so a caller can check the claim or reuse the set.
        max_violation: largest r . f_theta'(X) / beta over unit-path-norm branches found by the
            search of section 6 (> 1 proves the network is not globally optimal); NaN without a
            search.
        violating_patterns: the patterns (on the given rows) of the branches with
            max_violation > 1, most violating first, for a solver to add; ``None`` without one.
        violating_weights: (W1 (V, d', m), w2 (V, m) or None, w3 (V,)) of those branches, unit
            path norm, float64 on the network's device (patterns on other rows: read them there).
        pattern_bounds: B_p / beta per pattern (float64, CPU): > 1 where the network's residual
            violates pattern p's dual constraint.
        dual_scale: the c of section 5 applied to the residual.
        contains_network: whether every branch lies in a cone of S.
        n: number of rows (all shards).
        seconds: wall time.
        refined: patterns refined by the exact cutting-plane step.
    """

    primal: float
    lower_bound: float
    gap: float
    relative_gap: float
    scope: str
    num_patterns: int
    patterns: Optional[PatternSet] = None
    max_violation: float = float("nan")
    violating_patterns: Optional[PatternSet] = None
    violating_weights: Optional[tuple] = None
    pattern_bounds: Optional[torch.Tensor] = None
    dual_scale: float = 0.0
    contains_network: bool = True
    n: int = 0
    seconds: float = 0.0
    refined: int = 0
    info: dict = field(default_factory=dict)

    def metrics(self) -> dict:
        """The logged values as plain floats (``max_violation`` only after a search)."""
        out = {
            "primal": self.primal,
            "lower_bound": self.lower_bound,
            "gap": self.gap,
            "relative_gap": self.relative_gap,
        }
        if not math.isnan(self.max_violation):
            out["max_violation"] = self.max_violation
        return out

    def __repr__(self) -> str:
        extra = "" if math.isnan(self.max_violation) else f", max_violation={self.max_violation:.4g}"
        return (
            f"Certificate(primal={self.primal:.10g}, lower_bound={self.lower_bound:.10g}, "
            f"gap={self.gap:.3e}, relative_gap={self.relative_gap:.3e}, scope={self.scope!r}, "
            f"num_patterns={self.num_patterns}{extra})"
        )


# ------------------------------------------------------------------------------------------------
# Network pass
# ------------------------------------------------------------------------------------------------
# ------------------------------------------------------------------------------------------------
# Pattern masks
# ------------------------------------------------------------------------------------------------
def _chunks(P: int, per_pattern: int):
    step = max(1, ENTRY_CHUNK // max(1, per_pattern))
    for start in range(0, P, step):
        yield slice(start, min(P, start + step))


def _signs(D1: torch.Tensor, D2: Optional[torch.Tensor], s, sig, dtype):
    """(D1 float (c,k,m), S1 = s (2 D1 - 1), S2 = sig (2 D2 - 1) or None) for boolean masks."""
    D1f = D1.to(dtype)
    S1 = s.to(dtype)[:, None, :] * (2 * D1f - 1)
    if D2 is None:
        return D1f, S1, None
    S2 = sig.to(dtype)[:, None] * (2 * D2.to(dtype) - 1)
    return D1f, S1, S2


def _row_weights(D1f, S1, S2, mu1, mu2):
    """G^T mu in row form: s (2D1-1) mu1 + sig (2D2-1) D1 mu2, shape (c, k, m)."""
    W = S1 * mu1
    if S2 is not None and mu2 is not None:
        W = W + (S2 * mu2)[:, :, None] * D1f
    return W


# ------------------------------------------------------------------------------------------------
# Membership: does every branch lie in a cone of S?
# ------------------------------------------------------------------------------------------------
@torch.no_grad()
def _membership(Xf, W1, w2, w3, outputs, y_scale, S: PatternSet, sync: RowSync, tol: float):
    """bool (K,): branch k lies, within ``tol``, in some cone of S and has its prediction there.

    A branch lies in cone p when its q_k = (w3 w2_j W1[:, j])_j satisfies pattern p's cone rows
    and A_p q_k reproduces the branch's output; violations are normalised by
    max_i ||x_i|| * sum_j ||q_kj||, so ``tol`` is relative. Read by feasibility rather than
    pattern identity: a network rebuilt from a solution sits on cone boundaries and reads its own
    patterns differently from the set that was solved (MATH.md section 8).
    """
    K = W1.shape[0]
    q_scale = W1.norm(dim=1)
    if w2 is not None:
        q_scale = q_scale * w2.abs()
    q_scale = q_scale * w3.abs()[:, None]  # (K, m): ||q_kj||
    # relative to the whole network and the targets, not to the branch: a numerically zero
    # branch (or network) left by an interior-point solve may sit 1e-12 outside its cone,
    # which is harmless for J
    scale = sync.max(torch.stack([Xf.norm(dim=1).max() * q_scale.sum(), y_scale]))
    scale = scale.max()
    coef = w3[:, None] * (w2 if w2 is not None else torch.ones_like(q_scale))  # (K, m)
    P, n, m = S.D1.shape
    worst = torch.zeros(K, P, dtype=Xf.dtype, device=Xf.device)
    for start in range(0, n, ROW_CHUNK):
        rows = slice(start, start + ROW_CHUNK)
        Z = torch.einsum("nd,kdm->knm", Xf[rows], W1) * coef[:, None, :]  # x_i . q_kj
        F = outputs[:, rows]
        for sl in _chunks(P, K * Z.shape[1] * m):
            D1 = S.D1[sl, rows]
            D2 = None if S.D2 is None else S.D2[sl, rows]
            D1f, S1, S2 = _signs(D1, D2, S.s[sl], S.sig[sl], Xf.dtype)
            R1 = S1[None] * Z[:, None]  # (K, c, r, m)
            v = torch.relu(-R1).amax(dim=(2, 3))
            z = (D1f[None] * Z[:, None]).sum(dim=3)  # (K, c, r)
            if S2 is not None:
                v = torch.maximum(v, torch.relu(-S2[None] * z).amax(dim=2))
                pred = D2.to(Xf.dtype)[None] * z
            else:
                pred = z
            v = torch.maximum(v, (pred - F[:, None]).abs().amax(dim=2))
            worst[:, sl] = torch.maximum(worst[:, sl], v)
    worst = sync.max(worst)
    ok = worst <= tol * scale
    return ok.any(dim=1) | (q_scale.sum(dim=1) == 0)


# ------------------------------------------------------------------------------------------------
# Support rows
# ------------------------------------------------------------------------------------------------
@dataclass
class _Rows:
    """Rows shared by all ranks for a block of patterns: ids (c, k) and per-pattern data.

    ``X`` is (k, d') when the rows are the same for every pattern (all rows), else (c, k, d').
    """

    ids: torch.Tensor
    X: torch.Tensor
    D1: torch.Tensor  # bool (c, k, m)
    D2: Optional[torch.Tensor]  # bool (c, k)
    shared: bool


def _gather_sorted(sync: RowSync, ids, *tensors):
    """Gather row-major tensors from every rank and order the rows by global id."""
    ids = sync.cat(ids)
    out = [sync.cat(t) for t in tensors]
    order = torch.argsort(ids)
    return (ids[order],) + tuple(t[order] for t in out)


def _all_rows(Xf, S: PatternSet, sync: RowSync, sl) -> _Rows:
    ids = sync.row_ids(Xf.shape[0], Xf.device)
    D1 = S.D1[sl].permute(1, 0, 2).to(torch.uint8)
    D2 = None if S.D2 is None else S.D2[sl].t().to(torch.uint8)
    if D2 is None:
        ids, X, D1 = _gather_sorted(sync, ids, Xf, D1)
    else:
        ids, X, D1, D2 = _gather_sorted(sync, ids, Xf, D1, D2)
        D2 = D2.t().bool()
    c = D1.shape[1]
    return _Rows(ids[None].expand(c, -1), X, D1.permute(1, 0, 2).bool(), D2, True)


def _top_rows(sync: RowSync, score, ids, Xc, D1c, D2c, k: int):
    """Per pattern, the k rows with the largest score over all ranks (ties: lowest id).

    score, ids: (c, n); Xc: (n, d') shared or (c, n, d'); D1c (c, n, m); D2c (c, n) or None.
    Returns the selected rows ordered by global id, padded with zero-score rows when fewer.
    """
    c, n = score.shape
    kk = min(k, n)
    top = torch.topk(score, kk, dim=1).indices  # (c, kk)
    if Xc.dim() == 2:
        Xs = Xc[top]
    else:
        Xs = torch.gather(Xc, 1, top[:, :, None].expand(-1, -1, Xc.shape[2]))
    D1s = torch.gather(D1c, 1, top[:, :, None].expand(-1, -1, D1c.shape[2]))
    parts = [torch.gather(score, 1, top), torch.gather(ids, 1, top), Xs, D1s.to(torch.uint8)]
    if D2c is not None:
        parts.append(torch.gather(D2c, 1, top).to(torch.uint8))
    # rank-major concatenation along a leading axis, then back to per-pattern rows
    gathered = [sync.cat(p.transpose(0, 1).contiguous()).transpose(0, 1) for p in parts]
    sc, gid = gathered[0], gathered[1]
    kk = min(k, sc.shape[1])
    # deterministic order whatever the number of ranks: by score, then by id
    key = torch.argsort(gid, dim=1)
    sc, gid = torch.gather(sc, 1, key), torch.gather(gid, 1, key)
    gathered = [torch.gather(t, 1, key if t.dim() == 2 else key[:, :, None].expand(-1, -1, t.shape[2]))
                for t in gathered]
    pick = torch.sort(torch.topk(sc, kk, dim=1, sorted=True).indices, dim=1).values
    sel = [torch.gather(t, 1, pick if t.dim() == 2 else pick[:, :, None].expand(-1, -1, t.shape[2]))
           for t in gathered]
    return sel


# ------------------------------------------------------------------------------------------------
# Stage 2: the fit
# ------------------------------------------------------------------------------------------------
def _project_rows(Z, S1, S2, D1f):
    """Row-wise projection onto C_i = {e : s_j (2D1_ij - 1) e_j >= 0, sig (2D2_i - 1) sum_j D1_ij e_j >= 0}.

    Returns (mu1 (c,k,m) >= 0, mu2 (c,k) >= 0 or None) with Proj(Z) = Z + S1 mu1 + S2 D1 mu2, i.e.
    the multipliers of the projection. In e' = S1 e the set is {e' >= 0, b . e' >= 0},
    b = S2 D1 S1, and Proj = max(0, z' + nu b) for the smallest nu >= 0 with b . max(0, z' + nu b)
    >= 0: a nondecreasing piecewise-linear equation solved exactly after sorting its breakpoints.
    """
    zp = S1 * Z
    if S2 is None:
        return torch.relu(-zp), None
    b = S2[..., None] * D1f * S1
    h0 = (b * torch.relu(zp)).sum(dim=-1)
    nu = torch.zeros_like(h0)
    need = h0 < 0
    if bool(need.any()):
        idx = need.nonzero(as_tuple=True)
        zr, br, hr = zp[idx], b[idx], h0[idx]  # (R, m)
        tau = -br * zr  # the breakpoints: a term switches on (b = +1) or off (b = -1) there
        valid = (br != 0) & (tau > 0)
        inf = torch.finfo(Z.dtype).max
        T = torch.where(valid, tau, torch.full_like(tau, inf))
        order = torch.argsort(T, dim=1)
        Ts = torch.gather(T, 1, order)
        ds = torch.gather(torch.where(valid, br, torch.zeros_like(br)), 1, order)
        finite = Ts < inf
        s0 = (((br > 0) & ~valid).sum(dim=1) + ((br < 0) & valid).sum(dim=1)).to(Z.dtype)
        slope_after = s0[:, None] + ds.cumsum(dim=1)
        slope_before = torch.cat([s0[:, None], slope_after[:, :-1]], dim=1)
        prev = torch.cat([torch.zeros_like(Ts[:, :1]), Ts[:, :-1]], dim=1)
        delta = torch.where(finite, Ts - prev, torch.zeros_like(Ts))
        H = hr[:, None] + (slope_before * delta).cumsum(dim=1)  # h at each breakpoint
        H = torch.where(finite, H, torch.full_like(H, -inf))
        hit = H >= 0
        anyhit = hit.any(dim=1)
        first = torch.where(anyhit, hit.to(torch.int64).argmax(dim=1), finite.sum(dim=1))
        j = (first - 1).clamp_min(0)[:, None]
        has_prev = first >= 1
        tstart = torch.where(has_prev, torch.gather(Ts, 1, j)[:, 0], torch.zeros_like(hr))
        hstart = torch.where(has_prev, torch.gather(H, 1, j)[:, 0], hr)
        slope = torch.where(has_prev, torch.gather(slope_after, 1, j)[:, 0], s0)
        root = tstart - hstart / slope.clamp_min(torch.finfo(Z.dtype).tiny)
        tend = torch.gather(Ts, 1, first.clamp_max(Ts.shape[1] - 1)[:, None])[:, 0]
        root = torch.where(anyhit, torch.minimum(root, tend), root)
        nu = nu.index_put(idx, root.clamp_min(0))
    e = torch.relu(zp + nu[..., None] * b)
    mu1 = (e - zp - nu[..., None] * b).clamp_min(0)
    return mu1, nu


def _project_group_ball(Q):
    """Projection of (c, m, d') groups onto {sum_j ||q_j|| <= 1}."""
    norms = Q.norm(dim=2)
    srt = torch.sort(norms, dim=1, descending=True).values
    cums = srt.cumsum(dim=1) - 1
    ks = torch.arange(1, norms.shape[1] + 1, dtype=norms.dtype, device=norms.device)
    count = ((srt - cums / ks) > 0).to(norms.dtype).mul(ks).amax(dim=1).clamp_min(1)
    theta = torch.gather(cums, 1, (count.long() - 1)[:, None])[:, 0] / count
    theta = torch.where(norms.sum(dim=1) > 1, theta, torch.zeros_like(theta))
    shrunk = torch.relu(norms - theta[:, None])
    return Q * (shrunk / norms.clamp_min(torch.finfo(Q.dtype).tiny))[:, :, None]


def _fit(g, rows: _Rows, s, sig, iterations: int, fit_dtype=None):
    """The multipliers of :func:`_admm`, run in ``fit_dtype`` (float32 halves the cost on large
    problems), with every B_p recomputed in the dtype of ``g`` (float64) from the multipliers
    found: a float32 fit only proposes mu, it never weakens validity.
    """
    dtype = g.dtype
    if fit_dtype is None or fit_dtype == dtype or iterations <= 0:
        return _admm(g, rows, s, sig, iterations)
    low = _Rows(rows.ids, rows.X.to(fit_dtype), rows.D1, rows.D2, rows.shared)
    _, mu1, mu2 = _admm(g.to(fit_dtype), low, s, sig, iterations)
    mu1 = mu1.to(dtype)
    mu2 = None if mu2 is None else mu2.to(dtype)
    D1f, S1, S2 = _signs(rows.D1, rows.D2, s, sig, dtype)
    fwd = "kd,ckm->cmd" if rows.shared else "ckd,ckm->cmd"
    B = (g + torch.einsum(fwd, rows.X, _row_weights(D1f, S1, S2, mu1, mu2))).norm(dim=2).amax(dim=1)
    B0 = g.norm(dim=2).amax(dim=1)  # mu = 0, in case the low-precision fit went nowhere
    keep = B <= B0
    mu1 = torch.where(keep[:, None, None], mu1, torch.zeros_like(mu1))
    if mu2 is not None:
        mu2 = torch.where(keep[:, None], mu2, torch.zeros_like(mu2))
    return torch.minimum(B, B0), mu1, mu2


def _admm(g, rows: _Rows, s, sig, iterations: int, adapt_every: int = 10):
    """ADMM for lambda_p(v) = max { g_p . q : q in cone_p, sum_j ||q_j|| <= 1 } on the support rows.

    Splitting q = p (p in the group ball) and E = X Q^T (each row of E in the row cone C_i of
    :func:`_project_rows`): the q-step solves (r1 I + r2 X^T X) q_j = rhs with one
    Cholesky factor (the balancing scales r1 and r2 together), the other steps are projections,
    and each E-step's projection
    multipliers are cone multipliers mu >= 0, so every iterate gives a valid
    B_p = max_j ||g_pj + [G^T mu]_pj||; the best is kept. Penalties are balanced per pattern.

    Returns (best B (c,), mu1 (c,k,m), mu2 (c,k) or None).
    """
    dtype = g.dtype
    c, m, d = g.shape
    D1f, S1, S2 = _signs(rows.D1, rows.D2, s, sig, dtype)
    X = rows.X
    fwd = "kd,ckm->cmd" if rows.shared else "ckd,ckm->cmd"
    bwd = "kd,cmd->ckm" if rows.shared else "ckd,cmd->ckm"
    k = X.shape[-2]
    best_B = g.norm(dim=2).amax(dim=1)
    best1 = torch.zeros_like(D1f)
    best2 = None if S2 is None else torch.zeros(c, k, dtype=dtype, device=g.device)
    if iterations <= 0 or k == 0:
        return best_B, best1, best2
    XtX = X.T @ X if rows.shared else torch.einsum("ckd,cke->cde", X, X)
    XtXb = XtX if XtX.dim() == 3 else XtX.expand(c, d, d)
    tiny = torch.finfo(dtype).tiny
    lam_mean = torch.diagonal(XtXb, dim1=1, dim2=2).mean(dim=1).clamp_min(tiny)  # trace / d'
    eye = torch.eye(d, dtype=dtype, device=g.device)
    r1 = best_B.clamp_min(tiny)
    r2 = r1 / lam_mean

    def factor(r1, r2):
        # (r1 I + r2 X^T X) / r1 = I + (r2 / r1) X^T X: the ratio r2 / r1 never changes, so one
        # Cholesky factor serves every penalty the balancing below chooses
        # a relative ridge keeps the factor defined in float32 for rank-deficient X^T X
        A = eye + (r2 / r1)[:, None, None] * XtXb
        A = A + (16 * torch.finfo(dtype).eps) * torch.diagonal(A, dim1=1, dim2=2).amax(dim=1)[:, None, None] * eye
        return torch.linalg.cholesky(A)

    L = factor(r1, r2)
    Q = torch.zeros_like(g)
    Pb = torch.zeros_like(g)
    U = torch.zeros_like(g)
    W = torch.zeros_like(D1f)
    XtW = torch.zeros_like(g)
    XtE = torch.zeros_like(g)
    for it in range(iterations):
        rhs = g + r1[:, None, None] * (Pb - U) + r2[:, None, None] * (XtE - XtW)
        Q = torch.cholesky_solve(rhs.transpose(1, 2), L).transpose(1, 2) / r1[:, None, None]
        P_old = Pb
        Pb = _project_group_ball(Q + U)
        U = U + Q - Pb
        Z = torch.einsum(bwd, X, Q) + W
        mu1, mu2 = _project_rows(Z, S1, S2, D1f)
        weights = _row_weights(D1f, S1, S2, mu1, mu2)  # Proj(Z) - Z
        W_new = -weights
        XtW_new = -torch.einsum(fwd, X, weights)
        B = (g - r2[:, None, None] * XtW_new).norm(dim=2).amax(dim=1)
        better = B < best_B
        if bool(better.any()):
            best_B = torch.where(better, B, best_B)
            best1 = torch.where(better[:, None, None], r2[:, None, None] * mu1, best1)
            if S2 is not None:
                best2 = torch.where(better[:, None], r2[:, None] * mu2, best2)
        # X^T E_new = X^T X Q + X^T W - X^T W_new, with no product over the rows
        XtE_new = torch.einsum("cmd,cde->cme", Q, XtXb) + XtW - XtW_new
        if adapt_every and it % adapt_every == adapt_every - 1:
            # residual balancing (Boyd et al., section 3.4.1): primal residuals of q = p and
            # X Q^T = E against the dual residual of the last change, both in q units
            ratio = torch.sqrt(r2 / r1)
            primal = (Q - Pb).norm(dim=(1, 2)) + ratio * (W_new - W).norm(dim=(1, 2))
            dual = (Pb - P_old).norm(dim=(1, 2)) + ratio * (XtE_new - XtE).norm(dim=(1, 2)) / lam_mean.sqrt()
            f = torch.where(primal > 5 * dual, 2.0, torch.where(dual > 5 * primal, 0.5, 1.0)).to(dtype)
            r1, r2 = r1 * f, r2 * f
            U = U / f[:, None, None]
            W_new = W_new / f[:, None, None]
            XtW_new = XtW_new / f[:, None, None]
        XtE, XtW, W = XtE_new, XtW_new, W_new
    return best_B, best1, best2


# ------------------------------------------------------------------------------------------------
# Stage 3: exact refinement by cutting planes (Clarabel)
# ------------------------------------------------------------------------------------------------
def _relaxed_socp(blocks, m: int, d: int):
    """One block-diagonal SOCP: for each block, max sum_j g_j.q_j s.t. sum_j t_j <= 1,
    ||q_j|| <= t_j and the block's cone rows. Returns Clarabel data and the row layout."""
    import scipy.sparse as sp

    nq = m * d
    nb = nq + m
    rows, cols, vals, b = [], [], [], []
    layout = []
    r0 = 0
    cvec = np.zeros(len(blocks) * nb)
    for bi, (g, Xr, S1r, D1r, S2r) in enumerate(blocks):
        off = bi * nb
        cvec[off : off + nq] = -g.reshape(-1)
        # sum_j t_j <= 1
        rows.append(np.full(m, r0))
        cols.append(off + nq + np.arange(m))
        vals.append(np.ones(m))
        b.append(np.ones(1))
        start_rows = r0 + 1
        k = Xr.shape[0]
        if k:
            # first-layer rows (i, j): -S1_ij x_i on q_j
            rid = start_rows + np.arange(k * m).reshape(k, m)
            R = np.broadcast_to(rid[:, :, None], (k, m, d))
            C = np.broadcast_to(off + (np.arange(m)[:, None] * d + np.arange(d)[None, :])[None], (k, m, d))
            V = -S1r[:, :, None] * Xr[:, None, :]
            rows.append(R.ravel()), cols.append(C.ravel()), vals.append(V.ravel())
            b.append(np.zeros(k * m))
            n1 = k * m
            if S2r is not None:
                rid2 = start_rows + n1 + np.arange(k)
                V2 = -(S2r[:, None, None] * D1r[:, :, None]) * Xr[:, None, :]
                R2 = np.broadcast_to(rid2[:, None, None], (k, m, d))
                keep = np.broadcast_to(D1r[:, :, None] > 0, (k, m, d))
                rows.append(R2[keep]), cols.append(C[keep]), vals.append(V2[keep])
                b.append(np.zeros(k))
                n1 += k
        else:
            n1 = 0
        layout.append((r0, start_rows, n1))
        r0 = start_rows + n1
    n_nonneg = r0
    # second-order cones (t_j, q_j)
    for bi in range(len(blocks)):
        off = bi * nb
        base = n_nonneg + bi * m * (d + 1)
        j = np.arange(m)
        rows.append(base + j * (d + 1)), cols.append(off + nq + j), vals.append(-np.ones(m))
        R = base + (j[:, None] * (d + 1) + 1 + np.arange(d)[None, :])
        C = off + (j[:, None] * d + np.arange(d)[None, :])
        rows.append(R.ravel()), cols.append(C.ravel()), vals.append(-np.ones(m * d))
    b.append(np.zeros(len(blocks) * m * (d + 1)))
    nrows = n_nonneg + len(blocks) * m * (d + 1)
    A = sp.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(nrows, len(blocks) * nb),
    )
    return cvec, A, np.concatenate(b), n_nonneg, layout, nb


def _solve_relaxed(blocks, m, d, tol: float = 1e-10):
    """Solve the block SOCP; per block (q (m, d), mu1 (k, m), mu2 (k,) or None), or None on failure."""
    import clarabel
    import scipy.sparse as sp

    cvec, A, b, n_nonneg, layout, nb = _relaxed_socp(blocks, m, d)
    cones = [clarabel.NonnegativeConeT(n_nonneg)] + [clarabel.SecondOrderConeT(d + 1)] * (len(blocks) * m)
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
    out = []
    for bi, (g, Xr, S1r, D1r, S2r) in enumerate(blocks):
        off = bi * nb
        q = x[off : off + m * d].reshape(m, d)
        _, start, n1 = layout[bi]
        k = Xr.shape[0]
        mu1 = z[start : start + k * m].reshape(k, m)
        mu2 = z[start + k * m : start + n1] if S2r is not None else None
        out.append((q, mu1, mu2))
    return out


@torch.no_grad()
def _refine(Xf, S: PatternSet, g, B, floor, seeds, sync: RowSync, rounds: int, add_rows: int,
            tol: float = 1e-9):
    """Cutting-plane refinement of the patterns whose B_p exceeds ``floor`` (module doc, step 3).

    Patterns are refined one at a time, largest B_p first, each by its own small Clarabel
    programs (one block program for all patterns factorises much more slowly). seeds: per pattern
    (ids, X, D1, D2) of initial rows, on the device and ordered by id. Once a pattern's maximiser
    is feasible its B_p is lambda_p(v), and no other pattern needs to go below it.
    Updates ``B`` in place and returns the number of patterns refined.
    """
    dtype, device = Xf.dtype, Xf.device
    P, n, m = S.D1.shape
    d = Xf.shape[1]
    ids_local = sync.row_ids(n, device)
    xnorm = Xf.norm(dim=1).clamp_min(1e-300)
    refined = 0
    for p in torch.argsort(B, descending=True).tolist():
        if float(B[p]) <= floor:
            break
        refined += 1
        ids, Xr, D1r, D2r = seeds[p]
        s, sig = S.s[p : p + 1], S.sig[p : p + 1]
        D1p = S.D1[p : p + 1]
        D2p = None if S.D2 is None else S.D2[p : p + 1]
        D1all, S1all, S2all = _signs(D1p, D2p, s, sig, dtype)
        for _ in range(rounds):
            D1f, S1, S2 = _signs(D1r[None], None if D2r is None else D2r[None], s, sig, dtype)
            block = (g[p].cpu().numpy(), Xr.cpu().numpy(), S1[0].cpu().numpy(), D1f[0].cpu().numpy(),
                     None if S2 is None else S2[0].cpu().numpy())
            solved = _solve_relaxed([block], m, d)
            if solved is None:
                break
            q, mu1, mu2 = solved[0]
            mu1 = torch.as_tensor(mu1, dtype=dtype, device=device)
            mu2 = None if mu2 is None else torch.as_tensor(mu2, dtype=dtype, device=device)
            W = _row_weights(D1f, S1, S2, mu1[None], None if mu2 is None else mu2[None])[0]
            Bp = (g[p] + torch.einsum("kd,km->md", Xr, W)).norm(dim=1).max()
            if Bp < B[p]:
                B[p] = Bp
            if float(B[p]) <= floor:
                break
            # rows whose cone constraints the relaxed maximiser violates
            Q = torch.as_tensor(q, dtype=dtype, device=device)
            Q = Q / Q.norm(dim=1).sum().clamp_min(1e-300)
            Z = (Xf @ Q.T)[None]
            viol = torch.relu(-S1all * Z).amax(dim=2)
            if S2all is not None:
                viol = torch.maximum(viol, torch.relu(-S2all * (D1all * Z).sum(dim=2)))
            viol = viol / xnorm[None]
            viol = torch.where(torch.isin(ids_local, ids)[None], torch.zeros_like(viol), viol)
            if float(sync.max(viol.amax(dim=1))[0]) <= tol:
                floor = max(floor, float(B[p]))  # B_p = lambda_p(v): a floor for the others
                break
            sel = _top_rows(sync, viol, ids_local[None], Xf, D1p, D2p, add_rows)
            good = sel[0][0] > tol
            ids = torch.cat([ids, sel[1][0][good]])
            Xr = torch.cat([Xr, sel[2][0][good]])
            D1r = torch.cat([D1r, sel[3][0][good].bool()])
            if D2r is not None:
                D2r = torch.cat([D2r, sel[4][0][good].bool()])
            order = torch.argsort(ids)
            ids, Xr, D1r = ids[order], Xr[order], D1r[order]
            D2r = None if D2r is None else D2r[order]
    return refined


# ------------------------------------------------------------------------------------------------
# Section 6: search for strict descent directions
# ------------------------------------------------------------------------------------------------
def _branch_value(Xf, U, w2):
    """h = relu(relu(X U) w2) for candidates U (C, d', m), w2 (C, m); depth 2 (w2 None): relu(X u)."""
    pre = torch.einsum("nd,cdm->cnm", Xf, U)
    if w2 is None:
        return torch.relu(pre[:, :, 0])
    return torch.relu(torch.einsum("cnm,cm->cn", torch.relu(pre), w2))


def _normalise(U, w2):
    """Unit columns U_j and sum_j |w2_j| = 1 (depth 2: unit u): the ratio below is unchanged."""
    norms = U.norm(dim=1).clamp_min(1e-300)  # (C, m)
    U = U / norms[:, None, :]
    if w2 is None:
        return U, None
    w2 = w2 * norms
    w2 = w2 / w2.abs().sum(dim=1, keepdim=True).clamp_min(1e-300)
    return U, w2


def search_violations(Xf: torch.Tensor, r: torch.Tensor, beta: float, depth: int, hidden: int,
                      count: int, steps: int = 100, lr: float = 0.05, generator=None,
                      starts=None, sync: Optional[RowSync] = None):
    """Batched search for unit-path-norm branches theta' with r . f_theta'(X) > beta (section 6).

    ``count`` Gaussian starts (plus the optional ``starts`` = (U, w2) of the network's branches)
    climb rho(theta') = sigma r . h_theta'(X) / R_path(theta') by Adam, sigma = +-1 the output
    sign fixed at the start. Sums over rows go through ``sync``. Returns
    (rho_best (C,), U (C, d', m), w2 (C, m) or None, sigma (C,)) at each candidate's best point,
    U with unit columns and sum |w2| = 1, so (U, w2, sigma) has unit path norm.
    """
    sync = sync or RowSync()
    dtype, device = Xf.dtype, Xf.device
    d = Xf.shape[1]
    gdev = generator.device if generator is not None else torch.device("cpu")
    U = torch.randn(count, d, hidden, generator=generator, device=gdev, dtype=dtype).to(device)
    w2 = None
    if depth == 3:
        w2 = torch.randn(count, hidden, generator=generator, device=gdev, dtype=dtype).to(device)
    if starts is not None:
        U = torch.cat([U, starts[0].to(device=device, dtype=dtype)])
        if w2 is not None:
            w2 = torch.cat([w2, starts[1].to(device=device, dtype=dtype)])
    U, w2 = _normalise(U, w2)

    def numerator_and_grad(U, w2):
        with torch.enable_grad():
            Ur = U.detach().requires_grad_(True)
            wr = None if w2 is None else w2.detach().requires_grad_(True)
            N = torch.zeros(U.shape[0], dtype=dtype, device=device)
            gU = torch.zeros_like(U)
            gw = None if w2 is None else torch.zeros_like(w2)
            for start in range(0, Xf.shape[0], ROW_CHUNK):
                rows = slice(start, start + ROW_CHUNK)
                val = _branch_value(Xf[rows], Ur, wr) @ r[rows]
                grads = torch.autograd.grad(val.sum(), [Ur] + ([wr] if wr is not None else []))
                N += val.detach()
                gU += grads[0]
                if gw is not None:
                    gw += grads[1]
        N = sync.sum(N)
        gU = sync.sum(gU)
        gw = None if gw is None else sync.sum(gw)
        return N, gU, gw

    N, _, _ = numerator_and_grad(U, w2)
    sigma = torch.where(N >= 0, 1.0, -1.0).to(dtype)
    best = torch.full_like(N, -float("inf"))
    bestU, bestw = U.clone(), None if w2 is None else w2.clone()
    params = [U.clone()] + ([w2.clone()] if w2 is not None else [])
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
    b1, b2, eps = 0.9, 0.999, 1e-12
    for step in range(steps + 1):
        U, w2 = _normalise(params[0], params[1] if len(params) > 1 else None)
        params = [U] + ([w2] if w2 is not None else [])
        N, gU, gw = numerator_and_grad(U, w2)
        # after normalisation R_path = 1 and rho = sigma N; the gradient of N / R at R = 1 is
        # grad N - N grad R
        rho = sigma * N
        better = rho > best
        best = torch.where(better, rho, best)
        bestU = torch.where(better[:, None, None], U, bestU)
        if w2 is not None:
            bestw = torch.where(better[:, None], w2, bestw)
        if step == steps:
            break
        with torch.enable_grad():
            Ur = U.detach().requires_grad_(True)
            wr = None if w2 is None else w2.detach().requires_grad_(True)
            R = Ur.norm(dim=1)
            R = (R * wr.abs()).sum(dim=1) if wr is not None else R[:, 0]
            gR = torch.autograd.grad(R.sum(), [Ur] + ([wr] if wr is not None else []))
        grads = [sigma[:, None, None] * (gU - N[:, None, None] * gR[0])]
        if w2 is not None:
            grads.append(sigma[:, None] * (gw - N[:, None] * gR[1]))
        t = step + 1
        new = []
        for p, gp, (m1, m2) in zip(params, grads, moments):
            m1.mul_(b1).add_(gp, alpha=1 - b1)
            m2.mul_(b2).addcmul_(gp, gp, value=1 - b2)
            new.append(p + lr * (m1 / (1 - b1 ** t)) / ((m2 / (1 - b2 ** t)).sqrt() + eps))
        params = new
    return best, bestU, bestw, sigma


# ------------------------------------------------------------------------------------------------
# The certificate
# ------------------------------------------------------------------------------------------------
def _branch_scales(gram: torch.Tensor, Fy: torch.Tensor, cost: torch.Tensor) -> torch.Tensor:
    """alpha >= 0 minimising 1/2 ||sum_k alpha_k f_k - y||^2 + sum_k alpha_k cost_k (cost = beta R_k).

    A K-variable bound-constrained quadratic, solved on the CPU in float64 (identical on every
    rank) by L-BFGS-B from alpha = 1 (the network), then polished by a Newton step on the free
    variables. At a restricted optimum alpha = 1 already satisfies the optimality conditions.
    """
    from scipy.optimize import minimize

    G = gram.detach().double().cpu().numpy()
    h = (Fy - cost).detach().double().cpu().numpy()
    K = G.shape[0]
    ones = np.ones(K)

    def fun(a):
        Ga = G @ a
        return 0.5 * a @ Ga - h @ a, Ga - h

    res = minimize(fun, ones, jac=True, method="L-BFGS-B", bounds=[(0, None)] * K,
                   options=dict(maxiter=2000, ftol=1e-16, gtol=1e-13))
    alpha = np.maximum(res.x, 0.0) if np.all(np.isfinite(res.x)) else ones
    free = alpha > 0
    if free.any():
        trial = alpha.copy()
        trial[free] = np.linalg.lstsq(G[np.ix_(free, free)], h[free] - G[np.ix_(free, ~free)] @ alpha[~free],
                                      rcond=None)[0]
        if np.all(trial >= 0) and fun(trial)[0] <= fun(alpha)[0]:
            alpha = trial
    if fun(alpha)[0] > fun(ones)[0]:
        alpha = ones
    return torch.as_tensor(alpha, dtype=gram.dtype, device=gram.device)


def _default_iterations(P: int, k: int, m: int, d: int) -> int:
    """By the work of one iteration (two products of k x d' rows with m d' numbers per pattern)."""
    work = max(1, P * k * m * d)
    return int(min(1000, max(20, 2e10 // work)))


@torch.no_grad()
def certify(
    net: ParallelReLU,
    X,
    y,
    beta,
    patterns: Optional[PatternSet] = None,
    extra_patterns: int = 0,
    search: int = 0,
    generator: Optional[torch.Generator] = None,
    multipliers=None,
    solution=None,
    *,
    iterations: Optional[int] = None,
    support: int = DEFAULT_SUPPORT,
    refine="auto",
    refine_rounds: int = 25,
    search_steps: int = 100,
    dual_point: str = "scaled",
    fit_dtype: Optional[torch.dtype] = None,
    exhaustive: bool = False,
    strict: bool = True,
    membership_tol: float = 1e-6,
    sync: Optional[RowSync] = None,
) -> Certificate:
    """Certify ``net`` on (X, y): J(theta), a valid lower bound on OPT(S) and the gap.

    Args:
        net: the :class:`ParallelReLU` (its device is where everything runs, in float64).
        X: (n, d) data without the bias column (moved to the network's device); y: (n,) targets.
        beta: the regularization weight of J (sum form, MATH.md section 1).
        patterns: the set S; ``None`` is the network's own active set. A given set must contain,
            for every branch, a cone the branch lies in (checked by feasibility to
            ``membership_tol``): otherwise ``ValueError`` (``strict=True``) or a certificate with
            ``contains_network=False`` whose gap no longer bounds J - OPT(S) (``strict=False``).
        extra_patterns: add this many random patterns (MATH.md section 3, Remark 3) to S.
        search: number of random starts of the descent-direction search (section 6); 0 skips it.
        generator: torch generator for the sampled patterns and the search starts (the same seed
            on every process under DDP).
        multipliers: (mu1 (P, n, m), mu2 (P, n) or None) cone multipliers for the first P patterns
            of S (a solver's), evaluated as one more candidate. Rows must be the rows of X.
        solution: a :class:`~lightning_convex.Solution`; its pattern set is S when ``patterns`` is
            None, its multipliers are used, and its residual is tried as a second dual point.
        iterations: iterations of the multiplier fit (default: by problem size, 20-300).
        support: rows per pattern carrying multipliers in the fit (all rows when n <= support).
        refine: ``"auto"`` (exact cutting-plane refinement when m d' <= 2000), True or False.
        refine_rounds: cutting-plane rounds at most.
        search_steps: Adam steps of the search.
        dual_point: ``"scaled"`` (default): v = y - sum_k alpha_k f_k(X) with alpha >= 0 the
            optimal rescaling of each branch (a K-variable problem; alpha = 1 at a restricted
            optimum); ``"network"``: v = y - f(X).
        fit_dtype: precision of the multiplier fit (default: float32 for large problems without
            refinement, else float64). The bound itself is always evaluated in float64.
        exhaustive: the caller states that S holds every hyperplane arrangement (scope "global").
        strict: see ``patterns``.
        sync: row-shard synchronisation (:class:`RowSync`) when X, y are one shard of the rows.

    Returns:
        a :class:`Certificate`.
    """
    start_time = time.perf_counter()
    sync = sync or RowSync()
    if not isinstance(net, ParallelReLU):
        raise TypeError(f"net must be a ParallelReLU, got {type(net).__name__}")
    beta = check_beta(beta)
    for name, param in net.named_parameters():
        if not bool(torch.isfinite(param).all()):
            raise ValueError(f"the network's parameter {name} contains NaN or inf entries")
    check_int("extra_patterns", extra_patterns)
    check_int("search", search)
    device = net.W1.device
    dtype = torch.float64
    rows = network_rows(net, X, y)
    if rows.y is None:
        raise ValueError("certify needs the targets y")
    Xf, y = rows.features, rows.y
    n_local, d = Xf.shape
    m = net.hidden
    depth = net.depth

    # -- the network: J, residual, its own patterns ------------------------------------------
    W1, w2, w3 = float64_parameters(net)
    own, outputs = read_branches(Xf, W1, w2, w3, net.bias, outputs=True)
    K = outputs.shape[0]
    r_net = y - outputs.sum(dim=0)
    stats = sync.sum(torch.cat([
        torch.stack([r_net.square().sum(), torch.tensor(float(n_local), dtype=dtype, device=device)]),
        outputs @ y,
        (outputs @ outputs.T).reshape(-1),
    ]))
    n_total = int(round(float(stats[1])))
    primal = 0.5 * float(stats[0]) + beta * float(regularizer(W1, w2, w3, net.regularization))
    path = branch_path_norms(W1, w2, w3)
    Fy, gram = stats[2 : 2 + K], stats[2 + K :].reshape(K, K)
    # the dual point: the residual of the network with each branch rescaled optimally
    # (alpha >= 0 keeps every branch in its cone, so this is a feasible point of S too)
    if dual_point == "scaled":
        alpha = _branch_scales(gram, Fy, beta * path)
    elif dual_point == "network":
        alpha = torch.ones(K, dtype=dtype, device=device)
    else:
        raise ValueError(f"dual_point must be 'scaled' or 'network', got {dual_point!r}")
    v = y - alpha @ outputs
    sums = sync.sum(torch.stack([v.square().sum(), (v * y).sum()]))
    vv, vy = float(sums[0]), float(sums[1])
    branch_corr = Fy - gram @ alpha  # v . f_k

    # -- the pattern set S -----------------------------------------------------------------
    if solution is not None:
        if patterns is None:
            patterns = solution.patterns
        if multipliers is None:
            multipliers = solution.multipliers
    contains = torch.ones(net.branches, dtype=torch.bool, device=device)
    if patterns is None:
        S, scope = own, "active set"
    else:
        if not isinstance(patterns, PatternSet):
            raise TypeError(f"patterns must be a PatternSet, got {type(patterns).__name__}")
        expected = (n_local, m, depth, net.bias)
        actual = (patterns.n, patterns.hidden, patterns.depth, patterns.bias)
        if expected != actual:
            raise ValueError(
                f"patterns are for (n, m, depth, bias) = {actual}, but X and the network give {expected}"
            )
        if len(patterns) == 0:
            raise ValueError("the pattern set is empty")
        S, scope = patterns.to(device), "given set"
        contains = _membership(Xf, W1, w2, w3, outputs, y.abs().max(), S, sync, membership_tol)
        if not bool(contains.all()):
            outside = torch.nonzero(~contains).flatten().tolist()
            message = (
                f"the network does not lie in the given pattern set: branches {outside} are in none "
                f"of its cones (tolerance {membership_tol:g}), so OPT(S) does not bound its "
                "objective. Certify against its own active set (patterns=None), add its patterns "
                "(lightning_convex.patterns_of(net, X)), or pass strict=False for a bound on OPT(S) "
                "alone."
            )
            if strict:
                raise ValueError(message)
    if extra_patterns:
        sampled = sample_patterns(rows, extra_patterns, m, generator=generator, depth=depth, bias=net.bias,
                                  sync=sync)
        S = concatenate([S, sampled])
        scope = f"{scope} + {len(sampled)} sampled"
    if exhaustive:
        scope = "global"
    P = len(S)

    # -- A^T v ------------------------------------------------------------------------------
    g = torch.empty(P, m, d, dtype=dtype, device=device)
    for sl in _chunks(P, n_local * m):
        D1f, _, _ = _signs(S.D1[sl], None, S.s[sl], S.sig[sl], dtype)
        a = D1f * v[None, :, None]
        if S.D2 is not None:
            a = a * S.D2[sl].to(dtype)[:, :, None]
        g[sl] = torch.einsum("nd,cnm->cmd", Xf, a)
    g = sync.sum(g)

    # -- multipliers: support, fit -----------------------------------------------------------
    k = min(support, n_total) if support and support > 0 else n_total
    full = n_total <= k
    do_refine = bool(refine) if refine != "auto" else (m * d <= 2000)
    if iterations is None:
        iterations = _default_iterations(P, n_total if full else k, m, d)
        if do_refine:  # the fit only has to seed the exact refinement
            iterations = min(iterations, 200)
    if fit_dtype is None:  # large problems without refinement: propose mu in float32
        big = P * (n_total if full else k) * m * d > 1e9
        fit_dtype = torch.float32 if big and not do_refine else dtype
    Xs = Xf if full or fit_dtype == dtype else Xf.to(fit_dtype)
    B = torch.empty(P, dtype=dtype, device=device)
    seeds = {}
    ids_local = sync.row_ids(n_local, device)
    block = max(1, ENTRY_CHUNK // max(1, (n_total if full else k) * max(m, d)))
    for s0 in range(0, P, block):
        sl = slice(s0, min(P, s0 + block))
        c = sl.stop - sl.start
        if full:
            rows = _all_rows(Xf, S, sync, sl)
        else:
            D1f, S1, S2 = _signs(S.D1[sl], None if S.D2 is None else S.D2[sl], S.s[sl], S.sig[sl], fit_dtype)
            # the scores only choose rows, so the fit's precision suffices
            H = torch.einsum("nd,cmd->cnm", Xs, g[sl].to(fit_dtype))
            score = torch.relu(-S1 * H).square().sum(dim=2)
            if S2 is not None:
                score = score + torch.relu(-S2 * (D1f * H).sum(dim=2)).square()
            sel = _top_rows(sync, score, ids_local[None].expand(c, -1), Xf, S.D1[sl],
                            None if S.D2 is None else S.D2[sl], k)
            rows = _Rows(sel[1], sel[2], sel[3].bool(), sel[4].bool() if S.D2 is not None else None, False)
        Bb, mu1, mu2 = _fit(g[sl], rows, S.s[sl], S.sig[sl], iterations, fit_dtype)
        B[sl] = Bb
        if do_refine:
            # seed each pattern's cutting planes with the rows carrying the most fitted multiplier
            mass = mu1.sum(dim=2) + (mu2 if mu2 is not None else 0)
            r0 = min(mass.shape[1], 2 * m * d + 8)
            top = torch.topk(mass, r0, dim=1).indices
            for i in range(c):
                pick = top[i][mass[i, top[i]] > 0]
                pick = torch.sort(pick).values
                Xr = rows.X[pick] if rows.shared else rows.X[i, pick]
                seeds[sl.start + i] = (
                    rows.ids[i, pick], Xr, rows.D1[i, pick],
                    None if rows.D2 is None else rows.D2[i, pick],
                )

    # a solver's multipliers: one more candidate per pattern
    if multipliers is not None:
        mu1_s, mu2_s = multipliers
        mu1_s = torch.as_tensor(mu1_s).to(device=device, dtype=dtype)
        Pm = mu1_s.shape[0]
        if mu1_s.dim() != 3 or Pm > P or tuple(mu1_s.shape[1:]) != (n_local, m):
            raise ValueError(
                f"multipliers mu1 must have shape (P, {n_local}, {m}) with P <= {P}, got {tuple(mu1_s.shape)}"
            )
        if bool((mu1_s < 0).any()):
            mu1_s = mu1_s.clamp_min(0)  # any mu >= 0 is valid; negative entries are solver noise
        if mu2_s is not None:
            mu2_s = torch.as_tensor(mu2_s).to(device=device, dtype=dtype).clamp_min(0)
        c_s = g[:Pm].clone()
        local = torch.zeros_like(c_s)
        for sl in _chunks(Pm, n_local * m):
            D1f, S1, S2 = _signs(S.D1[sl], None if S.D2 is None else S.D2[sl], S.s[sl], S.sig[sl], dtype)
            W = _row_weights(D1f, S1, S2, mu1_s[sl], None if mu2_s is None else mu2_s[sl])
            local[sl] = torch.einsum("nd,cnm->cmd", Xf, W)
        c_s = c_s + sync.sum(local)
        B[:Pm] = torch.minimum(B[:Pm], c_s.norm(dim=2).amax(dim=1))

    # -- exact refinement where the bound is limited ------------------------------------------
    tau = beta * vv / vy if vy > 0 else float("inf")
    inside = contains & (path > 0)
    rho_floor = float((branch_corr[inside] / path[inside]).max()) if bool(inside.any()) else -float("inf")
    floor = max(tau, rho_floor)
    refined = 0
    if do_refine and math.isfinite(floor):
        for p in range(P):
            if p not in seeds:
                empty = torch.zeros(0, dtype=torch.long, device=device)
                seeds[p] = (empty, Xf.new_zeros(0, d), torch.zeros(0, m, dtype=torch.bool, device=device),
                            None if S.D2 is None else torch.zeros(0, dtype=torch.bool, device=device))
        refined = _refine(Xf, S, g, B, floor, seeds, sync, refine_rounds, add_rows=max(16, 2 * m * d))

    # -- the bound ------------------------------------------------------------------------------
    Bmax = float(B.max())
    bound = _dual_bound(vy, vv, beta, Bmax)
    lower, scale = bound.value, bound.scale
    info = {"B_max": Bmax, "tau": tau, "rho_floor": rho_floor, "iterations": iterations,
            "support": k, "v": dual_point}
    if solution is not None and solution.residual.shape[0] == n_local and multipliers is not None:
        # the solver's own residual with its own multipliers: exact at its optimum
        vs = solution.residual.to(device=device, dtype=dtype)
        sums_s = sync.sum(torch.stack([vs.square().sum(), (vs * y).sum()]))
        Pm = mu1_s.shape[0]
        cs = torch.zeros(Pm, m, d, dtype=dtype, device=device)
        for sl in _chunks(Pm, n_local * m):
            D1f, S1, S2 = _signs(S.D1[sl], None if S.D2 is None else S.D2[sl], S.s[sl], S.sig[sl], dtype)
            a = D1f * vs[None, :, None]
            if S2 is not None:
                a = a * S.D2[sl].to(dtype)[:, :, None]
            W = a + _row_weights(D1f, S1, S2, mu1_s[sl], None if mu2_s is None else mu2_s[sl])
            cs[sl] = torch.einsum("nd,cnm->cmd", Xf, W)
        cs = sync.sum(cs)
        if Pm == P:  # the solver's dual point is certified only when it covers every pattern
            bound_s = _dual_bound(float(sums_s[1]), float(sums_s[0]), beta, float(cs.norm(dim=2).amax()))
            lower_s, scale_s = bound_s.value, bound_s.scale
            if lower_s > lower:
                lower, scale = lower_s, scale_s
                info["v"] = "solution"
    gap = primal - lower
    relative = relative_gap(primal, lower)

    # -- search outside S ---------------------------------------------------------------------
    max_violation = float("nan")
    violating_patterns = violating_weights = None
    if search:
        starts = None
        if path.numel() and bool((path > 0).any()):
            live = path > 0
            starts = (W1[live], w2[live] if w2 is not None else None)
        # the network's own residual: a violation is then a strict descent direction for it
        rho, U, wv, sigma = search_violations(
            Xf, r_net, beta, depth, m, search, steps=search_steps, generator=generator,
            starts=starts, sync=sync,
        )
        max_violation = float(rho.max()) / beta
        hit = torch.nonzero(rho > beta).flatten()
        hit = hit[torch.argsort(rho[hit], descending=True)]
        if hit.numel():
            Wv = U[hit]
            w2v = None if wv is None else wv[hit]
            violating_weights = (Wv, w2v, sigma[hit])
            violating_patterns = read_branches(Xf, Wv, w2v, sigma[hit], net.bias)

    return Certificate(
        primal=primal, lower_bound=lower, gap=gap, relative_gap=relative, scope=scope,
        num_patterns=P, patterns=S, max_violation=max_violation, violating_patterns=violating_patterns,
        violating_weights=violating_weights, pattern_bounds=(B / beta).cpu(), dual_scale=scale,
        contains_network=bool(contains.all()), n=n_total, seconds=time.perf_counter() - start_time,
        refined=refined, info=info,
    )
