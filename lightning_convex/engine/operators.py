"""The restricted program's operators in whitened coordinates, fused and streamed over row chunks.

With the thin decomposition X = U Sigma V^T of the feature matrix (d' columns, bias included;
rank r), every product the program needs goes through X q_pj = U z_pj with

    z_pj = Sigma V^T q_pj            and back     q_pj = V Sigma^-1 z_pj.

An optimal q_pj lies in the row space of X (MATH.md section 9: a component outside it changes
neither the prediction nor a cone row and only adds norm), so the program over z is the program
over q, with the regulariser ||q_pj|| = ||Sigma^-1 z_pj||. In z the data operator U has
orthonormal columns, so the first-layer cone rows satisfy G1^T G1 = I exactly and A, G are
well scaled; the ill-conditioning of X^T X (MATH.md section 9) moves into the regulariser,
whose proximal map a first-order method evaluates exactly (:func:`ellipsoid_prox`). With
``whiten=False`` the coordinates are only rotated (z = V^T q, data operator X V = U Sigma), for
comparison.

Row layout: cone rows and their multipliers are held as (n, P, m) and (n, P) here, so that one
(rows x r) @ (r x P m) product gives every pre-activation of a row chunk; :meth:`to_program_layout`
turns them into the program's (P, n, m) and (P, n).

Per pass, for a chunk of c rows (nothing of size n x P m d' is ever formed):

    forward   Y = F_c Z^T   (c x P m), then A Z = sum_pj M_pj Y_pj, G1 Z = S1 Y, G2 Z = S2 sum_j D1_pj Y_pj
    adjoint   F_c^T W,      W = M v + S1 mu1 + S2 D1 mu2            (A^T v + G^T mu in one product)

with M = D1 D2 the prediction mask, S1 = s_pj (2 D1_pj - 1), S2 = sig_p (2 D2_p - 1).
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch

from ..program import RestrictedProgram
from ..rows import ROW_CHUNK, RowSync

#: directions of X whose singular value is below this fraction of the largest are dropped (they
#: carry nothing a float64 eigendecomposition can resolve; dropping restricts the primal only,
#: so bounds computed on the original program stay valid)
RANK_RTOL = 1e-6
#: row masks are cached in the working dtype while they hold at most this many entries
MASK_CACHE_ENTRIES = 1 << 26


class Basis(NamedTuple):
    """The thin decomposition X = U diag(sigma) V^T of the feature matrix, float64: V (d', r),
    sigma (r,), and U (n_local, r), this process's rows of U. It depends on the rows alone, so a
    caller certifying the same rows again (a callback, every epoch) keeps it."""

    V: torch.Tensor
    sigma: torch.Tensor
    U: torch.Tensor


def gram_basis(gram: torch.Tensor, rtol: float = RANK_RTOL) -> Tuple[torch.Tensor, torch.Tensor]:
    """(V (d', r), sigma (r,)), largest first, from the float64 Gram matrix X^T X: its eigenvectors
    and the square roots of its eigenvalues, directions below ``rtol`` times the largest singular
    value dropped."""
    lam, V = torch.linalg.eigh(gram)
    keep = lam > (rtol * rtol) * lam.max().clamp_min(0)
    lam, V = lam[keep].flip(0), V[:, keep].flip(1)
    return V, lam.sqrt()


def row_basis(features: torch.Tensor, rtol: float = RANK_RTOL, sync: Optional[RowSync] = None) -> Basis:
    """The :class:`Basis` of ``features`` from one symmetric eigendecomposition of the smaller of
    X^T X and X X^T.

    With ``sync`` (rows split over processes) X^T X is the all-reduced sum of every process's
    Gram matrix, so each process gets the single-process V and sigma and its own rows of U;
    when there are fewer rows than columns in all, the rows are gathered (in global row order)
    and X X^T is decomposed on every process alike.
    """
    X = features.double()
    n, d = X.shape
    sync = sync or RowSync()
    n_total = int(sync.sum(torch.tensor([float(n)], dtype=torch.float64, device=X.device)).item())
    if n_total >= d:
        V, sigma = gram_basis(sync.sum(X.T @ X), rtol)
        return Basis(V, sigma, (X @ V) / sigma)
    ids = sync.row_ids(n, X.device)
    all_ids = sync.cat(ids)
    order = torch.argsort(all_ids)
    sorted_ids = all_ids[order]
    Xall = sync.cat(X)[order]
    U, sigma = gram_basis(Xall @ Xall.T, rtol)  # the eigenvectors of X X^T are U's columns
    V = (Xall.T @ U) / sigma
    # this process's rows of U: the positions of its ids in the global order
    return Basis(V, sigma, U[torch.searchsorted(sorted_ids, ids)])


class RowMasks(NamedTuple):
    """Masks and signs of a chunk of rows (working dtype; (c, P, m) unless noted).

    M = D1 D2 (prediction mask), S1 = s (2 D1 - 1), D1f = D1, S2 = sig (2 D2 - 1) (c, P) and
    b = S2 D1 S1 (the second-layer row in e' = S1 e coordinates, :mod:`.cones`), both ``None``
    for depth 2, and count = sum_pj M_pj (c,) (= ||m_i||^2, the masks being 0/1).
    """

    M: torch.Tensor
    S1: torch.Tensor
    D1f: torch.Tensor
    S2: Optional[torch.Tensor]
    b: Optional[torch.Tensor]
    count: torch.Tensor


class Operators:
    """A, G and their fused adjoint for ``program`` in z coordinates (module docstring).

    Args:
        program: the restricted program (its features, targets and patterns).
        dtype: working precision of the passes (float32 is the fast choice; certificates are
            recomputed in float64 on the program itself).
        whiten: z = Sigma V^T q (True) or only rotated, z = V^T q (False).
        chunk: rows per pass chunk.
        basis: the :class:`Basis` of the program's rows when the caller has it already.
        sync: how the rows combine when they are one process's shard (:class:`RowSync`): the
            adjoint's sums over rows are all-reduced, every other pass is row-local.
    """

    def __init__(self, program: RestrictedProgram, dtype=torch.float32, whiten: bool = True,
                 chunk: int = ROW_CHUNK, basis: Optional[Basis] = None, sync: Optional[RowSync] = None) -> None:
        self.program = program
        self.dtype = dtype
        self.whiten = bool(whiten)
        self.chunk = int(chunk)
        self.sync = sync or RowSync()
        if basis is None:
            basis = row_basis(program.features, sync=self.sync)
        elif basis.U.shape[0] != program.n:
            raise ValueError(f"the basis has {basis.U.shape[0]} rows, the program {program.n}")
        self.basis = basis
        V, sigma, U = basis
        self.V64, self.sigma64 = V, sigma
        self.r = sigma.numel()
        F = U if whiten else U * sigma
        self.F = F.to(dtype)
        # the regulariser ||q|| = ||weight * z||: weight = 1 / sigma (whitened) or 1 (rotated)
        self.norm_weight = (1.0 / sigma if whiten else torch.ones_like(sigma)).to(dtype)
        # ||(X^T W)_pj|| = ||bound_weight * (F^T W)_pj||
        self.bound_weight = (sigma if whiten else torch.ones_like(sigma)).to(dtype)
        pats = program.patterns
        self.P, self.n, self.m = len(pats), pats.n, pats.hidden
        self.depth = pats.depth
        self.y = program.y.to(dtype)
        #: max |y_i| over all rows (the unit of cone violations)
        y_abs = program.y.double().abs()
        self.y_max = float(self.sync.max(y_abs.max().reshape(1) if y_abs.numel() else y_abs.new_zeros(1)))
        # bool / sign data in (n, P, m) and (n, P) layout
        self.D1 = pats.D1.permute(1, 0, 2).contiguous()
        self.D2 = None if pats.D2 is None else pats.D2.T.contiguous()
        self.s = pats.s.to(dtype)
        self.sig = pats.sig.to(dtype)
        self._cache = None
        if self.n * self.P * self.m * 4 <= MASK_CACHE_ENTRIES:
            self._cache = self.masks(slice(0, self.n))

    # -- sizes and coordinates -----------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.F.device

    @property
    def shape(self) -> Tuple[int, int, int]:
        """The shape (P, m, r) of the variable Z."""
        return (self.P, self.m, self.r)

    def norm_bounds(self) -> Tuple[float, float]:
        """Upper bounds on ||A||^2 and ||G||^2 (Cauchy-Schwarz over each row): a row of A Z sums
        count_i pre-activations, a second-layer row sums at most m, and ||F||^2 is 1 when
        whitened (sigma_max^2 otherwise)."""
        f2 = 1.0 if self.whiten else float(self.sigma64.max()) ** 2
        count = second = 0.0
        for rows in self.row_chunks():
            mk = self.masks(rows)
            count = max(count, float(mk.count.max()))
            if mk.S2 is not None:
                second = max(second, float(mk.D1f.sum(dim=2).max()))
        count, second = self.sync.max(torch.tensor([count, second], dtype=torch.float64, device=self.device)).tolist()
        return f2 * max(count, 1.0), f2 * (1.0 + second)

    def rows_zeros(self):
        """Zero cone-row arrays ((n, P, m), (n, P) or None) in the working dtype."""
        z1 = torch.zeros(self.n, self.P, self.m, dtype=self.dtype, device=self.device)
        z2 = None if self.depth == 2 else torch.zeros(self.n, self.P, dtype=self.dtype, device=self.device)
        return z1, z2

    def to_z(self, Q: torch.Tensor) -> torch.Tensor:
        """z_pj = Sigma V^T q_pj (the row-space part of q; the rest only adds norm)."""
        Z = Q.double() @ self.V64
        if self.whiten:
            Z = Z * self.sigma64
        return Z.to(self.dtype)

    def to_q(self, Z: torch.Tensor) -> torch.Tensor:
        """q_pj = V Sigma^-1 z_pj, float64 (P, m, d')."""
        Z = Z.double()
        if self.whiten:
            Z = Z / self.sigma64
        return Z @ self.V64.T

    def to_program_layout(self, mu1: torch.Tensor, mu2: Optional[torch.Tensor]):
        """(n, P, m), (n, P) multipliers as the program's (P, n, m), (P, n)."""
        return mu1.permute(1, 0, 2).contiguous(), None if mu2 is None else mu2.T.contiguous()

    def from_program_layout(self, mu1: torch.Tensor, mu2: Optional[torch.Tensor]):
        """The inverse of :meth:`to_program_layout`, in the working dtype and device."""
        mu1 = mu1.to(device=self.device, dtype=self.dtype).permute(1, 0, 2).contiguous()
        if mu2 is not None:
            mu2 = mu2.to(device=self.device, dtype=self.dtype).T.contiguous()
        return mu1, mu2

    def group_norms(self, Z: torch.Tensor) -> torch.Tensor:
        """||q_pj|| = ||norm_weight * z_pj||, shape (P, m)."""
        return (Z * self.norm_weight).norm(dim=2)

    # -- masks -----------------------------------------------------------------------------------
    def masks(self, rows: slice) -> "RowMasks":
        """The masks and signs of a row chunk in the working dtype (:class:`RowMasks`)."""
        if self._cache is not None:
            return RowMasks(*(None if t is None else t[rows] for t in self._cache))
        D1f = self.D1[rows].to(self.dtype)
        S1 = self.s * (2 * D1f - 1)
        if self.D2 is None:
            return RowMasks(D1f, S1, D1f, None, None, D1f.sum(dim=(1, 2)))
        D2f = self.D2[rows].to(self.dtype)
        M = D1f * D2f[:, :, None]
        S2 = self.sig * (2 * D2f - 1)
        return RowMasks(M, S1, D1f, S2, S2[:, :, None] * D1f * S1, M.sum(dim=(1, 2)))

    def row_chunks(self):
        for start in range(0, self.n, self.chunk):
            yield slice(start, min(start + self.chunk, self.n))

    # -- passes ------------------------------------------------------------------------------------
    def forward(self, Z: torch.Tensor, out1: Optional[torch.Tensor] = None,
                out2: Optional[torch.Tensor] = None):
        """(A Z (n,), G1 Z (n, P, m), G2 Z (n, P) or None) from one product per row chunk."""
        Zf = Z.reshape(self.P * self.m, self.r)
        pred = torch.empty(self.n, dtype=self.dtype, device=self.device)
        if out1 is None:
            out1, out2 = self.rows_zeros()
        for rows in self.row_chunks():
            Y = (self.F[rows] @ Zf.T).view(-1, self.P, self.m)
            M, S1, D1f, S2 = self.masks(rows)[:4]
            pred[rows] = (M * Y).sum(dim=(1, 2))
            torch.mul(S1, Y, out=out1[rows])
            if S2 is not None:
                torch.mul(S2, (D1f * Y).sum(dim=2), out=out2[rows])
        return pred, out1, out2

    def predict(self, Z: torch.Tensor) -> torch.Tensor:
        """A Z alone (n,)."""
        Zf = Z.reshape(self.P * self.m, self.r)
        pred = torch.empty(self.n, dtype=self.dtype, device=self.device)
        for rows in self.row_chunks():
            Y = (self.F[rows] @ Zf.T).view(-1, self.P, self.m)
            pred[rows] = (self.masks(rows)[0] * Y).sum(dim=(1, 2))
        return pred

    def adjoint(self, v: Optional[torch.Tensor] = None, mu1: Optional[torch.Tensor] = None,
                mu2: Optional[torch.Tensor] = None) -> torch.Tensor:
        """A^T v + G^T mu (P, m, r) from one product per row chunk, summed over every process's
        rows; ``None`` terms are zero."""
        out = torch.zeros(self.P * self.m, self.r, dtype=self.dtype, device=self.device)
        for rows in self.row_chunks():
            M, S1, D1f, S2 = self.masks(rows)[:4]
            W = torch.zeros(rows.stop - rows.start, self.P, self.m, dtype=self.dtype, device=self.device)
            if v is not None:
                W.addcmul_(M, v[rows, None, None])
            if mu1 is not None:
                W.addcmul_(S1, mu1[rows])
            if S2 is not None and mu2 is not None:
                W.addcmul_(D1f, (S2 * mu2[rows])[:, :, None])
            out.addmm_(W.view(-1, self.P * self.m).T, self.F[rows])
        return self.sync.sum(out).view(self.P, self.m, self.r)

    def bound_norms(self, C: torch.Tensor) -> torch.Tensor:
        """||(X^T W)_pj|| from C = F^T W (the output of :meth:`adjoint`), shape (P, m), exact up
        to the dropped directions (RANK_RTOL); final certificates are recomputed on the program."""
        return (C * self.bound_weight).norm(dim=2)

    def __repr__(self) -> str:
        return (f"Operators(n={self.n}, r={self.r}, P={self.P}, m={self.m}, depth={self.depth}, "
                f"whiten={self.whiten}, dtype={self.dtype}, device={self.device})")
