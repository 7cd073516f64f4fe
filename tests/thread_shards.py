"""Row shards held by threads of one process: a RowSync whose collectives meet at a
threading.Barrier, and a stand-in for a Lightning strategy built on the same exchange.

Rows are split as the callbacks' training_shard splits them: shard r of W holds rows r, r + W, ...
"""

from __future__ import annotations

import copy
import threading

import torch

from lightning_convex.rows import RowSync


class Exchange:
    """W threads hand each other one tensor at a time (an all-gather)."""

    def __init__(self, size: int, timeout: float = 300.0) -> None:
        self.size = size
        self.barrier = threading.Barrier(size, timeout=timeout)
        self.slots = [None] * size

    def all_gather(self, rank: int, tensor: torch.Tensor) -> list:
        self.slots[rank] = tensor
        self.barrier.wait()
        out = list(self.slots)
        self.barrier.wait()  # nobody overwrites a slot before every thread has read them all
        return out


class ThreadRowSync(RowSync):
    """Shard ``rank`` of ``exchange.size``: sums, maxima and concatenations over the threads."""

    def __init__(self, exchange: Exchange, rank: int) -> None:
        self.exchange, self.rank = exchange, rank

    def sum(self, tensor):
        return torch.stack(self.exchange.all_gather(self.rank, tensor)).sum(dim=0)

    def max(self, tensor):
        return torch.stack(self.exchange.all_gather(self.rank, tensor)).amax(dim=0)

    def cat(self, tensor):
        return torch.cat(self.exchange.all_gather(self.rank, tensor))

    def row_ids(self, n_local, device):
        return self.rank + self.exchange.size * torch.arange(n_local, device=device)

    @property
    def distributed(self):
        return self.exchange.size > 1


class ThreadStrategy:
    """The collectives of a Lightning strategy that StrategySync uses, over threads. Like the real
    all_gather, it refuses tensors whose shapes differ between ranks."""

    def __init__(self, exchange: Exchange, rank: int) -> None:
        self.exchange, self.rank = exchange, rank

    def all_gather(self, tensor):
        parts = self.exchange.all_gather(self.rank, tensor)
        assert len({tuple(p.shape) for p in parts}) == 1, "all_gather needs equal shapes on every rank"
        return torch.stack(parts)

    def reduce(self, tensor, reduce_op="sum"):
        stacked = torch.stack(self.exchange.all_gather(self.rank, tensor))
        return stacked.sum(dim=0) if reduce_op == "sum" else stacked.amax(dim=0)


class ThreadTrainer:
    """What StrategySync reads from a Trainer."""

    def __init__(self, exchange: Exchange, rank: int) -> None:
        self.global_rank, self.world_size = rank, exchange.size
        self.strategy = ThreadStrategy(exchange, rank)


def shard(tensor: torch.Tensor, rank: int, size: int) -> torch.Tensor:
    return tensor[rank::size]


def run_sharded(size: int, work):
    """``work(rank, exchange)`` in ``size`` threads at once; their results in rank order. A failing
    thread breaks the barrier so that the others stop too, and its exception is raised here."""
    exchange = Exchange(size)
    results, errors = [None] * size, []

    def target(rank):
        try:
            results[rank] = work(rank, exchange)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            errors.append(exc)
            exchange.barrier.abort()

    threads = [threading.Thread(target=target, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def own_copy(module):
    """A private copy per thread, so no thread sees another's autograd state."""
    return copy.deepcopy(module)
