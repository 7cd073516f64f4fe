"""Does every branch of the network lie in a cone of the pattern set S (MATH.md section 8)?

A certificate against a given set S bounds J(theta) - OPT(S) only when the network is a
feasible point of the restricted program over S, i.e. when every branch k, written as
q_k = (w3_k w2_kj W1_k[:, j])_j, satisfies the cone rows of some pattern p of S and A_p q_k
reproduces the branch's output.
"""

from __future__ import annotations

import torch

from ..patterns import PatternSet
from ..rows import ROW_CHUNK, RowSync
from ..program import row_signs
from .cone_rows import pattern_chunks


@torch.no_grad()
def branch_membership(Xf, W1, w2, w3, outputs, y_scale, S: PatternSet, sync: RowSync, tol: float,
                      index: bool = False):
    """bool (K,): branch k lies, within ``tol``, in some cone of S and has its prediction there;
    with ``index`` also (K,) the first such pattern per branch (-1: none), the same on every
    process.

    Violations (of a cone row, or of the prediction against ``outputs`` (K, n)) are normalised
    by max(max_i ||x_i|| * sum_kj ||q_kj||, ``y_scale``), so ``tol`` is relative. Membership is
    read by feasibility rather than by pattern identity: a network rebuilt from a solution sits
    on cone boundaries and reads its own patterns differently from the set that was solved.
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
        for sl in pattern_chunks(P, K * Z.shape[1] * m):
            D1 = S.D1[sl, rows]
            D2 = None if S.D2 is None else S.D2[sl, rows]
            D1f, S1, S2 = row_signs(D1, D2, S.s[sl], S.sig[sl], Xf.dtype)
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
    contains = ok.any(dim=1) | (q_scale.sum(dim=1) == 0)
    if not index:
        return contains
    first = torch.where(ok.any(dim=1), ok.to(torch.int64).argmax(dim=1), torch.full_like(contains, -1, dtype=torch.int64))
    return contains, first


def check_membership(contains: torch.Tensor, tol: float, strict: bool) -> None:
    """Raise ``ValueError`` when ``strict`` and some branch lies in no cone of the given set."""
    if not strict or bool(contains.all()):
        return
    outside = torch.nonzero(~contains).flatten().tolist()
    raise ValueError(
        f"the network does not lie in the given pattern set: branches {outside} are in none "
        f"of its cones (tolerance {tol:g}), so OPT(S) does not bound its "
        "objective. Certify against its own active set (patterns=None), add its patterns "
        "(lightning_convex.patterns_of(net, X)), or pass strict=False for a bound on OPT(S) "
        "alone."
    )
