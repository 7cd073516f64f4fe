"""ParallelReLURegressor's scaling rule: the mini-batch losses of one epoch over the training set
sum to J = 1/2 ||f(X) - y||^2 + beta R (MATH.md section 1), whatever the batch sizes.

J comes from the independent numpy reference (tests/hybrid_reference.py). n = 23 rows in batches
of 5 leave a last batch of 3, so a share of beta R computed from the nominal batch size fails.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import lightning_convex as lc
from lightning_convex._compat import available_namespaces, namespace
from lightning_convex.regressor import regressor_class

import hybrid_reference as ref

BETA = 0.3
N, BATCH = 23, 5

ARCHITECTURES = [(3, 3, True), (3, 3, False), (2, 1, True)]  # (depth, m, bias)


def make(depth, m, bias, regularization, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, 4, generator=g, dtype=dtype)
    y = torch.randn(N, generator=g, dtype=dtype)
    torch.manual_seed(seed)
    net = lc.ParallelReLU(4, m, 5, depth=depth, bias=bias, regularization=regularization).to(dtype)
    with torch.no_grad():  # away from the initialisation's scale, so that R matters in J
        net.w3.mul_(2.0)
    return net, X, y


def reference_J(net, X, y):
    return ref.network_objective(net, X, y, BETA)[0]


@pytest.mark.parametrize("depth,m,bias", ARCHITECTURES)
@pytest.mark.parametrize("regularization", ["path", "paper"])
def test_batch_objectives_of_one_epoch_sum_to_J(depth, m, bias, regularization):
    net, X, y = make(depth, m, bias, regularization)
    module = regressor_class()(net, beta=BETA, n_train=N)
    batches = DataLoader(TensorDataset(X, y), batch_size=BATCH, shuffle=True,
                         generator=torch.Generator().manual_seed(1))
    sizes, total = [], 0.0
    with torch.no_grad():
        for Xb, yb in batches:
            sizes.append(Xb.shape[0])
            total += float(module.batch_objective(Xb, yb))
    assert sorted(sizes) == [3, 5, 5, 5, 5]
    J = reference_J(net, X, y)
    assert abs(total - J) <= 1e-12 * J


class _Frozen:
    """No optimizer: the weights stay put over the epoch, so the logged epoch sum is J."""

    def configure_optimizers(self):
        return None


@pytest.mark.parametrize("style", available_namespaces())
@pytest.mark.parametrize("regularization", ["path", "paper"])
def test_logged_epoch_objective_is_J(style, regularization):
    """Through a Trainer: the training-set size comes from the dataloader, and train/objective
    (summed over the epoch's steps) is J."""
    net, X, y = make(3, 3, True, regularization, dtype=torch.float32)
    module = type("FrozenRegressor", (_Frozen, regressor_class(style)), {})(net, beta=BETA)
    trainer_kwargs = dict(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                          enable_model_summary=False, accelerator="cpu", devices=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = namespace(style).Trainer(**trainer_kwargs)
        trainer.fit(module, DataLoader(TensorDataset(X, y), batch_size=BATCH))
    assert module.n_train is None and module._training_size() == N  # read from the dataloader
    J = reference_J(net, X, y)
    assert abs(float(trainer.callback_metrics["train/objective"]) - J) <= 1e-5 * J
