"""The data rows, prepared once at the public boundary and passed down the pipeline.

A :class:`Rows` holds the feature matrix the first layer sees (X with the constant-1 bias column
appended when ``bias``; MATH.md section 1), the targets when there are any, and the device and
dtype everything downstream works in. Public functions accept raw ``X`` (and ``y``) or a ready
``Rows``; :meth:`Rows.prepare` validates and converts raw input once and passes a ``Rows``
through, so patterns, programs, mappings and certificates never re-validate or re-append the
bias column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

import torch

from ._checks import as_matrix, as_targets, check_float_dtype

#: Rows per chunk in passes over the data: bounds the (K, rows, m) intermediates.
ROW_CHUNK = 8192
#: Largest number of (pattern, row, neuron) entries an operator materialises at once.
ENTRY_CHUNK = 1 << 24


def add_bias_column(X: torch.Tensor) -> torch.Tensor:
    """X with a constant-1 column appended (the first layer's bias, MATH.md section 1)."""
    ones = torch.ones(X.shape[0], 1, dtype=X.dtype, device=X.device)
    return torch.cat([X, ones], dim=1)


@dataclass(frozen=True)
class Rows:
    """Validated data rows.

    Attributes:
        features: (n, d') the first layer's input: X, with the bias column last when ``bias``.
        y: (n,) targets, or ``None`` where only X matters (reading patterns).
        bias: whether ``features`` carries the bias column.
    """

    features: torch.Tensor
    y: Optional[torch.Tensor]
    bias: bool

    @classmethod
    def prepare(cls, X, y=None, *, bias: bool, device=None, dtype=torch.float64,
                in_features: Optional[int] = None, name: str = "X") -> "Rows":
        """Validate raw ``X`` (n, d) and ``y`` once; a ``Rows`` is checked and converted instead.

        ``in_features`` (when given) must equal X's column count; ``y`` may be ``None``. Integer
        input converts straight to float64; ``dtype`` must be a floating dtype.
        """
        if dtype is not None:
            check_float_dtype(dtype)
        if isinstance(X, Rows):
            if X.bias != bool(bias):
                raise ValueError(f"the rows were prepared with bias={X.bias}, expected bias={bool(bias)}")
            if in_features is not None and X.in_features != in_features:
                raise ValueError(f"{name} has {X.in_features} columns but the network expects {in_features}")
            features = X.features.to(device=device if device is not None else X.device, dtype=dtype or X.dtype)
            if y is None:
                y = X.y
                if y is not None:  # already validated: only follow the features' device and dtype
                    y = y.to(device=features.device, dtype=features.dtype)
                if features is X.features and y is X.y:
                    return X
                rows = Rows(features, y, X.bias)
            else:
                rows = Rows(features, as_targets(y, features.shape[0], device=features.device,
                                                 dtype=features.dtype), X.bias)
        else:
            X = as_matrix(X, name=name, device=device, dtype=dtype)
            features = add_bias_column(X) if bias else X
            if y is not None:
                y = as_targets(y, features.shape[0], device=features.device, dtype=features.dtype)
            rows = Rows(features, y, bool(bias))
        if in_features is not None and rows.in_features != in_features:
            raise ValueError(f"{name} has {rows.in_features} columns but the network expects {in_features}")
        return rows

    # -- sizes -----------------------------------------------------------------------------------
    @property
    def X(self) -> torch.Tensor:
        """(n, d) the data without the bias column (a view)."""
        return self.features[:, : self.in_features]

    @property
    def n(self) -> int:
        return self.features.shape[0]

    @property
    def in_features(self) -> int:
        """d, the data's own columns."""
        return self.features.shape[1] - int(self.bias)

    @property
    def feature_dim(self) -> int:
        """d' = d + 1 with a bias column, else d."""
        return self.features.shape[1]

    @property
    def device(self) -> torch.device:
        return self.features.device

    @property
    def dtype(self) -> torch.dtype:
        return self.features.dtype

    def to(self, device=None, dtype=None) -> "Rows":
        """The same rows on another device or in another dtype (``self`` when nothing changes)."""
        return Rows.prepare(self, bias=self.bias, device=device, dtype=dtype)

    def chunks(self, size: int = ROW_CHUNK) -> Iterator[slice]:
        """Row slices of at most ``size`` rows."""
        for start in range(0, self.n, size):
            yield slice(start, start + size)

    def __repr__(self) -> str:
        return (f"Rows(n={self.n}, d'={self.feature_dim}, bias={self.bias}, targets={self.y is not None}, "
                f"device={self.device}, dtype={self.dtype})")


class RowSync:
    """How a computation combines rows split over processes; this base class is one process.

    A distributed subclass (:class:`lightning_convex.callbacks._strategy_sync.StrategySync`)
    all-reduces in :meth:`sum` / :meth:`max`, concatenates every rank's tensor along dim 0 in
    rank order in :meth:`cat` (lengths may differ), and numbers rows globally in
    :meth:`row_ids`. Every rank must make the same calls in the same order.
    """

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def max(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def cat(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def row_ids(self, n_local: int, device) -> torch.Tensor:
        """Global indices of this process's rows (int64)."""
        return torch.arange(n_local, device=device)

    @property
    def distributed(self) -> bool:
        """Whether other processes hold rows too."""
        return False
