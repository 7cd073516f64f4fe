"""What both callbacks share (lightning_convex/callbacks/_base.py): schedules with their own
checkpoint state, checkpoints written under the bare class name, schedule validation and
rank-zero output."""

from __future__ import annotations

import logging
import warnings

import pytest
import torch
from lightning_utilities.core import rank_zero
from torch.utils.data import DataLoader, TensorDataset

import lightning_convex as lc
from lightning_convex._compat import namespace
from lightning_convex.callbacks import ActiveSetWarmStart, ConvexCertificate
from lightning_convex.regressor import regressor_class

from hybrid_ddp_job import teacher_data

BETA = 0.1
pl = namespace("pytorch_lightning")


def make_model(seed=0):
    torch.manual_seed(seed)
    return regressor_class()(lc.ParallelReLU(3, 3, 4, bias=True), beta=BETA, lr=1e-2)


def trainer(**kwargs):
    opts = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False, accelerator="cpu", devices=1)
    opts.update(kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pl.Trainer(**opts)


def loader(X, y):
    return DataLoader(TensorDataset(X, y), batch_size=8)  # 5 steps per epoch


def pair():
    """Two instances of each callback with different schedules."""
    return [
        ActiveSetWarmStart(every_n_epochs=2, verbose=False),
        ActiveSetWarmStart(every_n_epochs=None, every_n_train_steps=7, at_train_end=False, verbose=False),
        ConvexCertificate(every_n_epochs=1),
        ConvexCertificate(every_n_epochs=None, every_n_train_steps=4),
    ]


def test_two_schedules_of_one_callback_coexist_and_resume(tmp_path):
    X, y = teacher_data()
    callbacks = pair()
    assert len({cb.state_key for cb in callbacks}) == 4
    saver = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer(max_epochs=3, callbacks=callbacks + [saver], enable_checkpointing=True).fit(make_model(), loader(X, y))
    # 15 steps: warm starts after epochs 1 and 2 (the last), and after steps 7 and 14;
    # certificates after each of the 3 epochs, and after steps 4, 8 and 12
    assert [h["epoch"] for h in callbacks[0].history] == [1, 2]
    assert [h["step"] for h in callbacks[1].history] == [7, 14]
    assert callbacks[2].num_certificates == 3 and callbacks[3].num_certificates == 3

    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)["callbacks"]
    for cb in callbacks:  # each under its own key
        assert saved[cb.state_key]["latest_epoch"] == cb.state_dict()["latest_epoch"]
        assert saved[cb.state_key]["latest_step"] == cb.state_dict()["latest_step"]
    resumed = pair()
    trainer(max_epochs=3, callbacks=resumed, default_root_dir=tmp_path).fit(
        make_model(seed=1), loader(X, y), ckpt_path=str(tmp_path / "last.ckpt"))
    for before, after in zip(callbacks, resumed):
        state, restored = before.state_dict(), after.state_dict()
        assert restored["latest_epoch"] == state["latest_epoch"]
        assert restored["latest_step"] == state["latest_step"]
    assert resumed[0].history == callbacks[0].history and resumed[1].history == callbacks[1].history
    assert resumed[2].num_certificates == 3 and resumed[3].num_certificates == 3


def test_checkpoint_keyed_by_class_name_still_resumes(tmp_path):
    """A checkpoint written while the state key was the bare class name restores the state."""
    X, y = teacher_data()
    first = ActiveSetWarmStart(every_n_epochs=1, extra_patterns=3, seed=4, verbose=False)
    saver = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer(max_epochs=2, callbacks=[first, saver], enable_checkpointing=True).fit(make_model(), loader(X, y))
    checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=True)
    checkpoint["callbacks"] = {
        ("ActiveSetWarmStart" if key == first.state_key else key): value
        for key, value in checkpoint["callbacks"].items()
    }
    torch.save(checkpoint, tmp_path / "legacy.ckpt")

    resumed = ActiveSetWarmStart(every_n_epochs=1, extra_patterns=3, seed=99, verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning names the key it does not recognise
        trainer(max_epochs=2, callbacks=[resumed], default_root_dir=tmp_path).fit(
            make_model(seed=1), loader(X, y), ckpt_path=str(tmp_path / "legacy.ckpt"))
    assert resumed.history == first.history
    assert torch.equal(resumed._generator.get_state(), first._generator.get_state())


@pytest.mark.parametrize("callback", [ActiveSetWarmStart, ConvexCertificate])
@pytest.mark.parametrize("name,value", [("every_n_epochs", -1), ("every_n_train_steps", -2),
                                        ("every_n_epochs", True), ("every_n_train_steps", 1.5)])
def test_schedule_validation(callback, name, value):
    with pytest.raises(ValueError, match=f"{name} must be None or a non-negative integer"):
        callback(**{name: value})


class _Listen(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_rank_zero_report_once():
    """An untrained network is provably not optimal (max_violation > 1): said once per callback."""
    X, y = teacher_data()
    callback = ConvexCertificate(search=8, seed=0)
    # the logger Lightning's rank-zero helpers write to (it may not propagate to the root)
    logger, listen = rank_zero.log, _Listen()
    level = logger.level
    logger.addHandler(listen)
    logger.setLevel(logging.INFO)
    try:
        trainer(max_epochs=2, callbacks=[callback]).fit(make_model(), loader(X, y))
    finally:
        logger.removeHandler(listen)
        logger.setLevel(level)
    assert callback.last_metrics["max_violation"] > 1
    assert sum("is not globally optimal" in message for message in listen.messages) == 1


def test_epoch_time_leaves_out_the_callbacks_own_work():
    """last_epoch_seconds times the epoch's batches, not the convex work done at its steps."""
    import time as _time

    class Slow(ConvexCertificate):
        def _run(self, trainer, pl_module, **point):
            _time.sleep(0.3)

    X, y = teacher_data()
    cb = Slow(every_n_epochs=None, every_n_train_steps=1)
    assert cb.last_epoch_seconds is None
    trainer(max_epochs=1, callbacks=[cb]).fit(make_model(), loader(X, y))
    assert cb.last_epoch_seconds is not None and 0 < cb.last_epoch_seconds < 0.3
