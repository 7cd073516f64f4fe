"""Row shards of a Trainer's processes, combined through ``trainer.strategy``."""

from __future__ import annotations

import torch

from ..rows import RowSync
from ._common import world


class StrategySync(RowSync):
    """The :class:`~lightning_convex.rows.RowSync` of a Trainer: every rank holds the unpadded shard
    :func:`~lightning_convex.callbacks._common.training_shard` gives it (rank r: rows r, r + W,
    ...), and sums, maxima and concatenations go through the strategy's collectives.

    On one process every operation is the identity, so a callback uses this class whatever the
    world size. Every rank must make the same calls in the same order (they are collectives).
    """

    def __init__(self, trainer) -> None:
        self.strategy = trainer.strategy
        self.rank, self.size = world(trainer)

    @property
    def distributed(self) -> bool:
        """Whether other processes hold rows too (world size > 1)."""
        return self.size > 1

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The elementwise sum over ranks."""
        if not self.distributed:
            return tensor
        # the strategy reduces in place: hand it a copy
        return self.strategy.reduce(tensor.clone(), reduce_op="sum")

    def max(self, tensor: torch.Tensor) -> torch.Tensor:
        """The elementwise maximum over ranks."""
        if not self.distributed:
            return tensor
        return self.strategy.reduce(tensor.clone(), reduce_op="max")

    def cat(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every rank's ``tensor`` concatenated along dim 0 in rank order; lengths may differ
        (the collective needs equal shapes, so each rank pads to the longest and the padding is
        cut off again)."""
        if not self.distributed:
            return tensor
        length = torch.tensor([tensor.shape[0]], device=tensor.device)
        lengths = self.strategy.all_gather(length).reshape(-1).tolist()
        padded = tensor.new_zeros((max(lengths),) + tuple(tensor.shape[1:]))
        padded[: tensor.shape[0]] = tensor
        gathered = self.strategy.all_gather(padded)  # (W, longest, ...)
        return torch.cat([gathered[r, :count] for r, count in enumerate(lengths)])

    def row_ids(self, n_local: int, device) -> torch.Tensor:
        """Global indices of this rank's rows: r, r + W, r + 2W, ..."""
        return self.rank + self.size * torch.arange(n_local, device=device)
