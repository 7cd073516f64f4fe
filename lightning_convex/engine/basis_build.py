"""The basis of the rows (:func:`~.operators.row_basis`) built a piece at a time, under a clock.

The engine's whitened coordinates need X = U Sigma V^T once per set of rows: the float64 Gram
matrix X^T X (a product over every row), its eigendecomposition, and U = X V Sigma^-1 (another
product over every row). For a certificate of a large data set that one-time work costs several
epochs of first-order training, more than a callback's budget for one certificate. A
:class:`BasisBuild` does it in pieces that each fit a share of a budget (a block of rows of the
Gram matrix, the eigendecomposition, a block of rows of U) and is carried from one certificate
to the next until the basis is complete; the certificates in between use a dual point that
needs no basis (:func:`~.dual.improve_dual`).

The Gram matrix and its eigendecomposition are float64, exactly as in
:func:`~.operators.row_basis`; U is computed in the working dtype of the passes that use it
(its rounding is then the rounding those passes apply to it anyway). The pieces are timed, and
the next piece is started only when its predicted time fits before the deadline; every call
does at least one piece, so the build always finishes.
"""

from __future__ import annotations

import time
from typing import Optional

import torch

from .operators import RANK_RTOL, Basis, gram_basis

#: rows per piece of the Gram matrix and of U (a piece is one product of that many rows)
PIECE_ROWS = 1024
#: the eigendecomposition of a d' x d' matrix is predicted to cost this many times the time of
#: d'^3 multiply-adds of the Gram matrix's product (a dense eigensolver does several passes of
#: d'^3 work at a lower rate than a matrix product)
EIGH_FACTOR = 8.0


class BasisBuild:
    """The :class:`~.operators.Basis` of ``features`` (n >= d' rows of one process), built by
    :meth:`advance` calls; :attr:`basis` is ``None`` until it is complete.

    Args:
        features: (n, d') the rows (float64 is used for the Gram matrix whatever their dtype).
        dtype: the working dtype of U.
        rtol: directions below this fraction of the largest singular value are dropped.
    """

    def __init__(self, features: torch.Tensor, dtype: torch.dtype = torch.float32, rtol: float = RANK_RTOL) -> None:
        n, d = features.shape
        if n < d:
            raise ValueError(f"a basis built from X^T X needs n >= d' rows, got {n} x {d}")
        self.features = features
        self.dtype = dtype
        self.rtol = float(rtol)
        self.gram = torch.zeros(d, d, dtype=torch.float64, device=features.device)
        self.row = 0  # rows done in the current stage (Gram, then U)
        self.V: Optional[torch.Tensor] = None
        self.sigma: Optional[torch.Tensor] = None
        self.U: Optional[torch.Tensor] = None
        self.basis: Optional[Basis] = None
        self._Vw: Optional[torch.Tensor] = None  # V and 1 / sigma in the working dtype, for U's pieces
        self._inv_sigma: Optional[torch.Tensor] = None
        #: seconds per row of the Gram product and of the U product, as last measured
        self.gram_row_seconds: Optional[float] = None
        self.u_row_seconds: Optional[float] = None
        #: seconds spent building so far
        self.seconds = 0.0

    @property
    def stage(self) -> str:
        """``"gram"``, ``"eigh"``, ``"project"`` or ``"done"``."""
        if self.basis is not None:
            return "done"
        if self.V is not None:
            return "project"
        return "gram" if self.row < self.features.shape[0] else "eigh"

    def predicted_seconds(self) -> Optional[float]:
        """The predicted time of the next piece (``None`` before anything was measured)."""
        n, d = self.features.shape
        stage = self.stage
        if stage == "gram":
            return None if self.gram_row_seconds is None else self.gram_row_seconds * min(PIECE_ROWS, n - self.row)
        if stage == "eigh":
            return None if self.gram_row_seconds is None else EIGH_FACTOR * self.gram_row_seconds * d
        if stage == "project":
            return None if self.u_row_seconds is None else self.u_row_seconds * min(PIECE_ROWS, n - self.row)
        return 0.0

    def product_seconds(self, columns: int) -> Optional[float]:
        """Predicted seconds of one product of all n rows of U (n x r) with ``columns`` columns in
        the working dtype, scaled from the measured U pieces (``None`` before one)."""
        if self.u_row_seconds is None or self.V is None:
            return None
        return self.u_row_seconds * self.features.shape[0] * columns / max(1, self.features.shape[1])

    def advance(self, deadline: Optional[float]) -> Optional[Basis]:
        """Build pieces until the next one's predicted time would pass ``deadline`` (a
        ``time.perf_counter()`` value; ``None``: to the end), at least one. Returns the basis
        once complete, else ``None``."""
        first = True
        while self.basis is None:
            if not first and deadline is not None:
                # a piece not measured yet is only started before the deadline
                if time.perf_counter() + (self.predicted_seconds() or 0.0) > deadline:
                    break
            first = False
            started = time.perf_counter()
            self._piece()
            self.seconds += time.perf_counter() - started
        return self.basis

    def _piece(self) -> None:
        n = self.features.shape[0]
        stage = self.stage
        started = time.perf_counter()
        if stage == "gram":
            rows = slice(self.row, min(self.row + PIECE_ROWS, n))
            X = self.features[rows].double()
            self.gram.addmm_(X.T, X)
            self.row = rows.stop
            self.gram_row_seconds = (time.perf_counter() - started) / max(1, rows.stop - rows.start)
        elif stage == "eigh":
            self.V, self.sigma = gram_basis(self.gram, self.rtol)
            self.gram = None  # no longer needed
            self.row = 0
            self.U = torch.empty(n, self.sigma.numel(), dtype=self.dtype, device=self.features.device)
            self._Vw = self.V.to(self.dtype)
            self._inv_sigma = (1.0 / self.sigma).to(self.dtype)
        elif stage == "project":
            rows = slice(self.row, min(self.row + PIECE_ROWS, n))
            torch.mm(self.features[rows].to(self.dtype), self._Vw, out=self.U[rows])
            self.U[rows] *= self._inv_sigma
            self.row = rows.stop
            self.u_row_seconds = (time.perf_counter() - started) / max(1, rows.stop - rows.start)
            if self.row >= n:
                self.basis = Basis(self.V, self.sigma, self.U)
