"""What the callbacks read from a fit: the network and beta, this rank's unpadded shard of the
training set, and rank 0's parameters broadcast to every rank.

Nothing here ``isinstance``-checks the trainer, strategy or module, so a callback works in
``pytorch_lightning`` and ``lightning.pytorch`` Trainers alike (MATH.md section 7).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from .._checks import check_beta
from ..model import ParallelReLU


def find_network(pl_module) -> ParallelReLU:
    """The LightningModule's single :class:`ParallelReLU` (ValueError when none or several)."""
    nets = [m for m in pl_module.modules() if isinstance(m, ParallelReLU)]
    if not nets:
        raise ValueError(
            f"{type(pl_module).__name__} contains no lightning_convex.ParallelReLU: the convex "
            "callbacks can only read parallel ReLU networks"
        )
    if len(nets) > 1:
        raise ValueError(
            f"{type(pl_module).__name__} contains {len(nets)} ParallelReLU modules; the convex "
            "callbacks need exactly one (wrap the others, or certify each separately with "
            "lightning_convex.certify)"
        )
    return nets[0]


def find_beta(pl_module, beta: Optional[float] = None) -> float:
    """beta: the given value, else ``pl_module.beta``, else ``pl_module.hparams['beta']``."""
    if beta is None:
        beta = getattr(pl_module, "beta", None)
    if beta is None:
        hparams = getattr(pl_module, "hparams", {}) or {}
        beta = hparams.get("beta") if hasattr(hparams, "get") else None
    if beta is None:
        raise ValueError(
            f"{type(pl_module).__name__} has no regularization weight: give it a `beta` attribute "
            "(or hyperparameter), or pass beta= to the callback"
        )
    return check_beta(beta)


def check_no_weight_decay(trainer, net: ParallelReLU) -> None:
    """Refuse optimizers that apply weight decay to the first layer (MATH.md section 1).

    Weight decay on all three layers is a concave function of the path norm, not the path or
    paper regularizer, so the convex program would certify a different objective.
    """
    first_layer = net.W1
    for optimizer in getattr(trainer, "optimizers", None) or []:
        for group in optimizer.param_groups:
            if float(group.get("weight_decay", 0.0) or 0.0) > 0 and any(p is first_layer for p in group["params"]):
                raise ValueError(
                    f"{type(optimizer).__name__} applies weight_decay={group['weight_decay']} to the "
                    "ParallelReLU's first layer: weight decay on all layers is not equivalent to the "
                    "convex program. Use the network's explicit regularizer (net.regularizer(), "
                    "as ParallelReLURegressor does) and weight_decay=0."
                )


def world(trainer) -> Tuple[int, int]:
    """(global rank, world size) of this process."""
    return int(getattr(trainer, "global_rank", 0)), int(getattr(trainer, "world_size", 1))


def _as_dataset(data) -> Dataset:
    if isinstance(data, DataLoader):
        return data.dataset
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(torch.is_tensor(t) for t in data):
        return TensorDataset(*data)
    if isinstance(data, Dataset):
        return data
    raise TypeError(
        "data must be None (the trainer's training set), an (X, y) pair of tensors, a Dataset or a "
        f"DataLoader; got {type(data).__name__}"
    )


def _stack(dataset: Dataset, index: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) >= 2:
        X, y = dataset.tensors[0], dataset.tensors[1]
        return X[index], y[index]
    xs, ys = [], []
    for i in index.tolist():
        item = dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise TypeError("each training example must be an (x, y) pair")
        xs.append(torch.as_tensor(item[0]))
        ys.append(torch.as_tensor(item[1]))
    if not xs:
        raise ValueError("the training set is empty")
    return torch.stack(xs), torch.stack(ys)


def training_shard(trainer, pl_module, data=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """This rank's unpadded shard (rows rank, rank + W, ...) of the full training set, as
    (X (n_r, d), y (n_r,)) on the module's device.

    DistributedSampler pads the data to a multiple of the world size, so sums over the training
    set must not iterate the training dataloader under DDP; the shards here partition the rows.
    """
    if data is None:
        loader = getattr(trainer, "train_dataloader", None)
        if loader is None:
            raise ValueError("the trainer has no training dataloader yet; pass data= to the callback")
        if isinstance(loader, (list, tuple)) or not hasattr(loader, "dataset"):
            raise ValueError("cannot read the training set from this dataloader; pass data= (X, y)")
        dataset = loader.dataset
    else:
        dataset = _as_dataset(data)
    if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__"):
        raise ValueError(
            f"the training set is a {type(dataset).__name__} without random access: the convex "
            "callbacks read every row at once; pass data=(X, y) (or a map-style Dataset) to the callback"
        )
    rank, size = world(trainer)
    index = torch.arange(rank, len(dataset), size)
    X, y = _stack(dataset, index)
    device = pl_module.device
    X = X.to(device).reshape(X.shape[0], -1)
    return X, y.to(device).reshape(-1)


@torch.no_grad()
def broadcast_parameters(trainer, module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters into every rank's ``module`` in place."""
    if world(trainer)[1] == 1:
        return
    for param in module.parameters():
        param.copy_(trainer.strategy.broadcast(param.detach().clone(), src=src))
