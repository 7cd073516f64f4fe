"""The LightningModule for ``lightning.pytorch`` users (``import lightning as L``).

    from lightning_convex.lightning_pytorch import ParallelReLURegressor

The callbacks in :mod:`lightning_convex.callbacks` work with both import styles as they are.
"""

from .regressor import regressor_class

ParallelReLURegressor = regressor_class("lightning.pytorch")

__all__ = ["ParallelReLURegressor"]
