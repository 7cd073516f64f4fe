"""The DDP scenario of test_active_set_warm_start, run in a subprocess (ddp_spawn under pytest's
output capture fails with "bad value(s) in fds_to_keep"). Usage: main(folder) writes every rank's
network parameters before and after each warm start into ``folder``."""

from __future__ import annotations

import sys
import warnings

import torch
from torch.utils.data import DataLoader, TensorDataset

import lightning_convex as lc
from lightning_convex._compat import namespace
from lightning_convex.callbacks import ActiveSetWarmStart

pl = namespace("pytorch_lightning")
BETA = 0.1


def teacher_data(n=40, d=3, seed=0):
    """Two ReLU teachers plus noise (the data of the warm-start tests)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    W = torch.randn(2, d, generator=g)
    y = torch.relu(X @ W[0]) - 0.5 * torch.relu(X @ W[1]) + 0.1 * torch.randn(n, generator=g)
    return X, y


def job_data():
    return teacher_data(n=41, seed=8)  # odd n: DistributedSampler pads one row


class SaveNet(pl.Callback):
    """Saves this rank's network parameters at each epoch end (placed before and after the
    warm-start callback, it records the weights the warm start saw and produced)."""

    def __init__(self, folder, tag):
        self.folder, self.tag = str(folder), tag

    def on_train_epoch_end(self, trainer, pl_module):
        state = {k: v.detach().cpu().clone() for k, v in pl_module.net.state_dict().items()}
        torch.save(state, f"{self.folder}/{self.tag}-e{trainer.current_epoch}-r{trainer.global_rank}.pt")


def main(folder):
    # /dev/shm is tiny in some containers: share tensors through files instead of fds
    torch.multiprocessing.set_sharing_strategy("file_system")
    X, y = job_data()
    torch.manual_seed(9)
    model = lc.ParallelReLURegressor(lc.ParallelReLU(3, 3, 4, bias=True), beta=BETA, lr=1e-2)
    callback = ActiveSetWarmStart(every_n_epochs=1, extra_patterns=4, spare="reseed", seed=11,
                                  verbose=False)
    callbacks = [SaveNet(folder, "pre"), callback, SaveNet(folder, "post")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = pl.Trainer(max_epochs=2, callbacks=callbacks, accelerator="cpu", devices=2,
                             strategy="ddp_spawn", logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(model, DataLoader(TensorDataset(X, y), batch_size=5))


if __name__ == "__main__":
    main(sys.argv[1])
