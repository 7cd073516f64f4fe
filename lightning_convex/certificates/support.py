"""The support rows of the multiplier fit: which rows carry cone multipliers, over all row shards.

With at most ``k`` rows in all, every row carries multipliers. Otherwise each pattern p keeps the
``k`` rows with the largest projected gradient of sum_j ||c_pj||^2 at mu = 0, c_p = A_p^T v +
G_p^T mu: the rows whose cone terms can cancel most of A_p^T v outside the cone. Rows are
gathered from every process (:class:`~lightning_convex.rows.RowSync`) and ordered by global row
id, so the fit sees the same rows in the same order whatever the number of processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch

from ..patterns import PatternSet
from ..program import RestrictedProgram
from ..rows import RowSync


@dataclass
class SupportRows:
    """Rows shared by all processes for a block of c patterns.

    Attributes:
        ids: (c, k) global row ids, ascending.
        X: (k, d') when the rows are the same for every pattern (``shared``), else (c, k, d').
        D1: bool (c, k, m), the patterns' first-layer masks on these rows.
        D2: bool (c, k) or None (depth 2).
        shared: whether every pattern of the block has the same rows.
    """

    ids: torch.Tensor
    X: torch.Tensor
    D1: torch.Tensor
    D2: Optional[torch.Tensor]
    shared: bool


def gather_sorted(sync: RowSync, ids, *tensors):
    """Gather row-major tensors from every process and order the rows by global id."""
    ids = sync.cat(ids)
    out = [sync.cat(t) for t in tensors]
    order = torch.argsort(ids)
    return (ids[order],) + tuple(t[order] for t in out)


def all_rows(Xf, S: PatternSet, sync: RowSync, sl: slice) -> SupportRows:
    """Every row of every process, for the patterns ``sl`` of S."""
    ids = sync.row_ids(Xf.shape[0], Xf.device)
    D1 = S.D1[sl].permute(1, 0, 2).to(torch.uint8)
    D2 = None if S.D2 is None else S.D2[sl].t().to(torch.uint8)
    if D2 is None:
        ids, X, D1 = gather_sorted(sync, ids, Xf, D1)
    else:
        ids, X, D1, D2 = gather_sorted(sync, ids, Xf, D1, D2)
        D2 = D2.t().bool()
    c = D1.shape[1]
    return SupportRows(ids[None].expand(c, -1), X, D1.permute(1, 0, 2).bool(), D2, True)


def top_rows(sync: RowSync, score, ids, Xc, D1c, D2c, k: int) -> Tuple[torch.Tensor, SupportRows]:
    """Per pattern, the k rows with the largest score over all processes (ties: lowest id).

    score, ids: (c, n); Xc: (n, d') shared or (c, n, d'); D1c bool (c, n, m); D2c (c, n) or None.
    Returns (their scores (c, k), the rows) ordered by global id, padded with zero-score rows
    when fewer.
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
    # deterministic order whatever the number of processes: by score, then by id
    key = torch.argsort(gid, dim=1)
    sc, gid = torch.gather(sc, 1, key), torch.gather(gid, 1, key)
    gathered = [torch.gather(t, 1, key if t.dim() == 2 else key[:, :, None].expand(-1, -1, t.shape[2]))
                for t in gathered]
    pick = torch.sort(torch.topk(sc, kk, dim=1, sorted=True).indices, dim=1).values
    sel = [torch.gather(t, 1, pick if t.dim() == 2 else pick[:, :, None].expand(-1, -1, t.shape[2]))
           for t in gathered]
    D2 = sel[4].bool() if D2c is not None else None
    return sel[0], SupportRows(sel[1], sel[2], sel[3].bool(), D2, False)


def support_rows(block: RestrictedProgram, g, Xf, sync: RowSync, k: int, ids_local) -> SupportRows:
    """The ``k`` support rows of each pattern of ``block``, chosen by the score of the module doc.

    ``block`` is the program over these patterns, possibly in a lower precision than ``Xf`` (the
    scores only choose rows, so the fit's precision suffices); ``g`` (c, m, d') is A^T v for
    them. The score is that of the cone rows G q at q = g: sum_j relu(-(G g)_ij)^2 (plus the
    second-layer row). ``ids_local`` are the global ids of this process's rows.
    """
    R1, R2 = block.cone_rows(g)
    score = torch.relu(-R1).square().sum(dim=2)
    if R2 is not None:
        score = score + torch.relu(-R2).square()
    S = block.patterns
    return top_rows(sync, score, ids_local[None].expand(len(S), -1), Xf, S.D1, S.D2, k)[1]
