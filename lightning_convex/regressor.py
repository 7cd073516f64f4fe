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

from ._checks import check_beta
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
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr!r}")
        self.net = net
        self.beta = check_beta(beta)
        self.lr = float(lr)
        self.optimizer_name = optimizer
        self.n_train = n_train
        self.save_hyperparameters(ignore=["net"])

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.net(X)

    def _training_size(self) -> int:
        if self.n_train is not None:
            return int(self.n_train)
        loader = self.trainer.train_dataloader
        dataset = getattr(loader, "dataset", None)
        if dataset is None:
            raise ValueError("cannot infer the training-set size; pass n_train=")
        self.n_train = len(dataset)
        return self.n_train

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
        return OPTIMIZERS[self.optimizer_name](self.net.parameters(), lr=self.lr)


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
