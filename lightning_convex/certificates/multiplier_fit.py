"""The multiplier fit (MATH.md section 5): cone multipliers mu >= 0 that make B_p(v, mu) small.

For a pattern p, lambda_p(v) = max { g_p . q : q in cone_p, sum_j ||q_j|| <= 1 } with g_p = A_p^T v
is the smallest B_p any mu can give. :func:`admm` solves that maximisation on the support rows
(:mod:`.support`) by splitting q = p (p in the group ball) and E = X Q^T (every row of E in its
row cone): the q-step needs one Cholesky factor of I + r X^T X, the other steps are projections
(the row projections are the engine's, :mod:`lightning_convex.engine.cones`),
and the multipliers of the row projections are cone multipliers mu >= 0. So every iterate gives a
valid B_p, whatever its accuracy, and the best one is kept; the fit only has to make B_p small,
never to converge. ADMM rather than projected gradient on the least squares in mu (equally
valid): the Cholesky q-step couples all support rows of a pattern exactly, where a gradient step
only follows the sum of squares of the c_pj and so needs far more iterations to bring B_p near
lambda_p(v). With an exact maximiser available, :mod:`.refinement` takes over from the fit.
"""

from __future__ import annotations

import torch

from ..engine.cones import row_multipliers
from ..program import row_signs, row_weights
from .support import SupportRows


def default_iterations(P: int, k: int, m: int, d: int) -> int:
    """By the work of one iteration (two products of k x d' rows with m d' numbers per pattern)."""
    work = max(1, P * k * m * d)
    return int(min(1000, max(20, 2e10 // work)))


def project_group_ball(Q):
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


def fit_multipliers(g, rows: SupportRows, s, sig, iterations: int, fit_dtype=None):
    """The multipliers of :func:`admm`, run in ``fit_dtype`` (float32 halves the memory traffic
    of a large fit), with every B_p recomputed in the dtype of ``g`` (float64) from the multipliers
    found: a float32 fit only proposes mu, it never weakens validity.
    """
    dtype = g.dtype
    if fit_dtype is None or fit_dtype == dtype or iterations <= 0:
        return admm(g, rows, s, sig, iterations)
    low = SupportRows(rows.ids, rows.X.to(fit_dtype), rows.D1, rows.D2, rows.shared)
    _, mu1, mu2 = admm(g.to(fit_dtype), low, s, sig, iterations)
    mu1 = mu1.to(dtype)
    mu2 = None if mu2 is None else mu2.to(dtype)
    D1f, S1, S2 = row_signs(rows.D1, rows.D2, s, sig, dtype)
    fwd = "kd,ckm->cmd" if rows.shared else "ckd,ckm->cmd"
    B = (g + torch.einsum(fwd, rows.X, row_weights(D1f, S1, S2, mu1, mu2))).norm(dim=2).amax(dim=1)
    B0 = g.norm(dim=2).amax(dim=1)  # mu = 0, in case the low-precision fit went nowhere
    keep = B <= B0
    mu1 = torch.where(keep[:, None, None], mu1, torch.zeros_like(mu1))
    if mu2 is not None:
        mu2 = torch.where(keep[:, None], mu2, torch.zeros_like(mu2))
    return torch.minimum(B, B0), mu1, mu2


def admm(g, rows: SupportRows, s, sig, iterations: int, adapt_every: int = 10):
    """ADMM for lambda_p(v) = max { g_p . q : q in cone_p, sum_j ||q_j|| <= 1 } on the support rows.

    Splitting q = p (p in the group ball) and E = X Q^T (each row of E in its row cone, MATH.md
    section 3): the q-step solves (r1 I + r2 X^T X) q_j = rhs with one Cholesky factor (the
    balancing scales r1 and r2 together), the other steps are projections, and each
    E-step's projection multipliers are cone multipliers mu >= 0, so every iterate gives a valid
    B_p = max_j ||g_pj + [G^T mu]_pj||; the best is kept. Penalties are balanced per pattern.

    Returns (best B (c,), mu1 (c,k,m), mu2 (c,k) or None).
    """
    dtype = g.dtype
    c, m, d = g.shape
    D1f, S1, S2 = row_signs(rows.D1, rows.D2, s, sig, dtype)
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
        Pb = project_group_ball(Q + U)
        U = U + Q - Pb
        Z = torch.einsum(bwd, X, Q) + W
        # the multipliers of the projection of every row of Z onto its cone (:mod:`..engine.cones`)
        mu1, mu2 = row_multipliers(S1 * Z, None if S2 is None else S2[..., None] * D1f * S1)
        weights = row_weights(D1f, S1, S2, mu1, mu2)  # Proj(Z) - Z
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
