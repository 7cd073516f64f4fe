"""The ready LightningModule for squared loss on a :class:`ParallelReLU`.

The mini-batch loss is scaled so that its sum over one epoch of the full training set is
exactly J = 1/2 ||f(X) - y||^2 + beta R (MATH.md section 1)::

    loss(batch) = 1/2 ||f(X_b) - y_b||^2 + beta * R * |b| / n

In the paper form each optimizer step is followed by the projection ||W1_k||_F <= 1. No weight
decay is applied: the regularizer is explicit (weight decay on all layers is a different,
non-equivalent objective). Under DDP gradients are averaged over ranks, so a step sees J / world
size; that only rescales the learning rate.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional

import torch

from ._checks import check_beta, check_int, check_number
from ._compat import namespace
from .model import ParallelReLU

OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "adamw": torch.optim.AdamW}


class _RegressorLogic:
    """The LightningModule body, shared by both import styles."""

    def __init__(self, net: ParallelReLU, beta: float, lr: float = 1e-2, optimizer: str = "adam",
                 n_train: Optional[int] = None) -> None:
        super().__init__()
        if not isinstance(net, ParallelReLU):
            raise TypeError(f"net must be a ParallelReLU, got {type(net).__name__}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
        check_number("lr", lr)
        check_int("n_train", n_train, minimum=1, optional=True)
        self.net = net
        self.beta = check_beta(beta)
        self.lr = float(lr)
        self.optimizer_name = optimizer
        self.n_train = n_train
        self.save_hyperparameters(ignore=["net"])

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.net(X)

    def _training_size(self) -> int:
        """n, the training rows: ``n_train``, checked against the training set's length when
        it has one (a wrong n gives every batch the wrong share of the regularizer)."""
        trainer = getattr(self, "_trainer", None)  # None when called outside a fit
        dataset = getattr(getattr(trainer, "train_dataloader", None), "dataset", None)
        try:
            found = None if dataset is None else len(dataset)
        except TypeError:  # an IterableDataset without a length
            found = None
        if self.n_train is not None:
            if found is not None and found != self.n_train:
                raise ValueError(
                    f"n_train={self.n_train} but the training set has {found} rows: each batch would "
                    "carry the wrong share of the regularizer and the logged objective would not be J"
                )
            return int(self.n_train)
        if found is None:
            raise ValueError("cannot infer the training-set size (the training data has no length, "
                             "e.g. an IterableDataset): pass n_train=, the number of training rows")
        return found

    def batch_objective(self, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """This batch's share of J: 1/2 ||f(X_b) - y_b||^2 + beta R |b| / n."""
        f = self.net(X)
        share = X.shape[0] / self._training_size()
        return 0.5 * (f - y.reshape(f.shape)).square().sum() + self.beta * share * self.net.regularizer()

    def training_step(self, batch, batch_idx):
        X, y = batch
        loss = self.batch_objective(X, y)
        self.log("train/objective", loss, on_step=False, on_epoch=True, reduce_fx="sum",
                 batch_size=X.shape[0])
        return loss

    def validation_step(self, batch, batch_idx):
        X, y = batch
        mse = (self.net(X) - y.reshape(-1)).square().mean()
        self.log("val/mse", mse, batch_size=X.shape[0])
        return mse

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        # the paper form's constraint ||W1_k||_F <= 1 is kept by projection after every step
        self.net.project_()

    def configure_optimizers(self):
        # weight_decay = 0 whatever the optimizer's default (AdamW's is 0.01): the regularizer is
        # explicit in the loss, and decay on all layers would optimise another objective
        return OPTIMIZERS[self.optimizer_name](self.net.parameters(), lr=self.lr, weight_decay=0.0)


@lru_cache(maxsize=None)
def regressor_class(style: str = "pytorch_lightning"):
    """``ParallelReLURegressor`` built on the LightningModule of one import style."""
    base = namespace(style).LightningModule
    # the module path must be where the class can be found again by name, so that ddp_spawn
    # can pickle instances
    home = __name__ if style == "pytorch_lightning" else "lightning_convex.lightning_pytorch"
    return type("ParallelReLURegressor", (_RegressorLogic, base), {
        "__module__": home,
        "__qualname__": "ParallelReLURegressor",
        "__doc__": __doc__,
    })


#: For ``pytorch_lightning`` Trainers; ``lightning.pytorch`` users import
#: ``lightning_convex.lightning_pytorch.ParallelReLURegressor``.
ParallelReLURegressor = regressor_class("pytorch_lightning")
