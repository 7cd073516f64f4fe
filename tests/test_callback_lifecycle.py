"""The callbacks across fits: an instance reused for a second fit acts again, and a fit resumed
from a checkpoint written at an epoch end before the callbacks acted there logs exactly what an
uninterrupted fit logs, under the same epochs (issue 15)."""

from __future__ import annotations

import csv
import warnings
from collections import defaultdict

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import lightning_convex as lc
from lightning_convex._compat import namespace
from lightning_convex.callbacks import ActiveSetWarmStart, ConvexCertificate
from lightning_convex.regressor import regressor_class

from hybrid_ddp_job import teacher_data

pl = namespace("pytorch_lightning")
BETA = 0.1


def model(seed=5):
    torch.manual_seed(seed)
    return regressor_class()(lc.ParallelReLU(3, 3, 4, bias=True), beta=BETA, lr=1e-2)


def loaders():
    X, y = teacher_data(seed=3)
    train = DataLoader(TensorDataset(X, y), batch_size=8)
    return train, DataLoader(TensorDataset(X, y), batch_size=64)


def trainer(**kwargs):
    opts = dict(enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1,
                num_sanity_val_steps=0)
    opts.update(kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pl.Trainer(**opts)


class SaveThenCrash(pl.Callback):
    """Listed before the convex callbacks: writes a checkpoint at the end of epoch ``epoch`` (so
    it holds the state from before they act there) and, with ``crash``, fails when the next
    epoch starts."""

    def __init__(self, path, epoch, crash):
        self.path, self.epoch, self.crash = path, epoch, crash

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            trainer.save_checkpoint(self.path)

    def on_train_epoch_start(self, trainer, pl_module):
        if self.crash and trainer.current_epoch == self.epoch + 1:
            raise RuntimeError("simulated crash")


def convex_metrics(log_dir):
    """epoch -> {convex/* name: value} from a CSVLogger's metrics.csv."""
    out = defaultdict(dict)
    with open(log_dir / "metrics.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            for key, value in row.items():
                if key.startswith("convex/") and value != "":
                    out[int(float(row["epoch"]))][key] = float(value)
    return dict(out)


def callbacks():
    return [ActiveSetWarmStart(every_n_epochs=2, extra_patterns=4, seed=7, verbose=False),
            ConvexCertificate(every_n_epochs=1, extra_patterns=2, search=4, seed=3, prog_bar=False)]


def run(tmp_path, tag, crash=False, resume=None):
    train, val = loaders()
    cbs = [SaveThenCrash(tmp_path / f"{tag}.ckpt", 1, crash)] + callbacks()
    logger = pl.loggers.CSVLogger(tmp_path / tag, name="logs", version=0)
    fit = trainer(max_epochs=4, callbacks=cbs, logger=logger, enable_checkpointing=False)
    net_module = model()
    if resume is not None:
        with torch.no_grad():  # everything must come from the checkpoint
            for p in net_module.net.parameters():
                p.add_(1.0)
    fit.fit(net_module, train, val, ckpt_path=resume)
    return net_module, logger


def test_resume_before_the_epoch_end_logs_what_an_uninterrupted_fit_logs(tmp_path):
    full, full_logger = run(tmp_path, "full")
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tmp_path, "crashed", crash=True)
    ckpt = tmp_path / "crashed.ckpt"
    assert ckpt.exists()
    resumed, resumed_logger = run(tmp_path, "resumed", resume=str(ckpt))
    assert all(torch.equal(a, b) for a, b in zip(full.net.state_dict().values(), resumed.net.state_dict().values()))
    expected = convex_metrics(tmp_path / "full" / "logs" / "version_0")
    got = convex_metrics(tmp_path / "resumed" / "logs" / "version_0")
    for epoch in (1, 2, 3):  # epoch 1's warm start and certificate are the replayed ones
        assert got[epoch].keys() == expected[epoch].keys(), epoch
        for key, value in expected[epoch].items():
            if key.endswith("seconds"):  # wall time, not a logged result
                continue
            assert got[epoch][key] == pytest.approx(value, rel=1e-12, abs=1e-12), (epoch, key)


def test_an_instance_serves_a_second_fit():
    train, _ = loaders()
    X, y = train.dataset.tensors
    warm, cert = callbacks()
    for seed in (5, 6):
        module = model(seed)
        trainer(max_epochs=2, callbacks=[warm, cert], logger=False, enable_checkpointing=False).fit(module, train)
        assert cert.num_certificates == 2
        # the last certificate and warm start are this fit's own
        assert cert.last_certificate.primal == pytest.approx(lc.objective(module.net, X, y, BETA), rel=1e-9)
        assert [h["epoch"] for h in warm.history] == [1]
        assert warm.history[0]["after"] == pytest.approx(lc.objective(module.net, X, y, BETA), rel=1e-9)


class Stream(torch.utils.data.IterableDataset):
    def __init__(self, X, y):
        self.X, self.y = X, y

    def __iter__(self):
        return iter(zip(self.X, self.y))


def test_iterable_data_and_wrong_sizes_are_named():
    train, _ = loaders()
    X, y = train.dataset.tensors
    stream = DataLoader(Stream(X, y), batch_size=8)
    module = regressor_class()(lc.ParallelReLU(3, 3, 4, bias=True), beta=BETA)
    with pytest.raises(ValueError, match="pass n_train="):
        trainer(max_epochs=1, logger=False, enable_checkpointing=False).fit(module, stream)
    module = regressor_class()(lc.ParallelReLU(3, 3, 4, bias=True), beta=BETA, n_train=X.shape[0])
    with pytest.raises(ValueError, match="Stream without random access.*pass data="):
        trainer(max_epochs=1, logger=False, enable_checkpointing=False,
                callbacks=[ConvexCertificate()]).fit(module, stream)
    module = regressor_class()(lc.ParallelReLU(3, 3, 4, bias=True), beta=BETA, n_train=X.shape[0] + 1)
    with pytest.raises(ValueError, match=f"n_train={X.shape[0] + 1} but the training set has {X.shape[0]} rows"):
        trainer(max_epochs=1, logger=False, enable_checkpointing=False).fit(module, train)
    with pytest.raises(ValueError, match="n_train"):
        regressor_class()(lc.ParallelReLU(3, 3, 4), beta=BETA, n_train=0)


def test_adamw_trains_the_logged_objective():
    """No weight decay unless it is part of J: AdamW's default 0.01 would optimise another
    objective (and ConvexCertificate refuses decay on the first layer)."""
    train, _ = loaders()
    module = regressor_class()(lc.ParallelReLU(3, 3, 4, bias=True), beta=BETA, optimizer="adamw")
    fit = trainer(max_epochs=2, logger=False, enable_checkpointing=False, callbacks=[ConvexCertificate()])
    fit.fit(module, train)
    assert all(group["weight_decay"] == 0 for group in fit.optimizers[0].param_groups)
