"""ActiveSetWarmStart in Lightning fits: monotone warm starts, fixed points, optimizer reset,
exact resume, DDP equality, both import styles.

References are independent (tests/hybrid_reference.py), never values produced by the callback.
"""

from __future__ import annotations

import copy
import csv
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import lightning_convex as lc
from lightning_convex import solvers
from lightning_convex._compat import namespace
from lightning_convex.callbacks import ActiveSetWarmStart
from lightning_convex.regressor import regressor_class
from lightning_convex.solution import Solution, SolveStatus

import hybrid_reference as ref
from hybrid_ddp_job import teacher_data

BETA = 0.1
pl = namespace("pytorch_lightning")


def quiet_trainer(style="pytorch_lightning", **kwargs):
    opts = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False, accelerator="cpu", devices=1)
    opts.update(kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return namespace(style).Trainer(**opts)


def acute():
    from lightning_convex.data import load_uci

    try:
        data = load_uci("acute-inflammation")
    except FileNotFoundError as exc:  # the UCI copies live outside the repository
        pytest.skip(str(exc))
    return data.X_train, data.y_train


def model_for(X, K=10, m=7, seed=0, style="pytorch_lightning", **kwargs):
    torch.manual_seed(seed)
    net = lc.ParallelReLU(X.shape[1], m, K, bias=True)
    return regressor_class(style)(net, beta=BETA, lr=1e-2, **kwargs)


def loader(X, y, batch_size=None, shuffle=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    return DataLoader(TensorDataset(X, y), batch_size=batch_size or max(1, X.shape[0] // 8),
                      shuffle=shuffle, generator=g)


def read_csv_metrics(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_thirty_epoch_fit_on_acute_inflammation_is_monotone_and_ends_at_fixed_point(tmp_path):
    X, y = acute()
    model = model_for(X, seed=0)
    callback = ActiveSetWarmStart(every_n_epochs=10, verbose=False)
    logger = pl.loggers.CSVLogger(tmp_path, name="hybrid")
    trainer = quiet_trainer(max_epochs=30, callbacks=[callback], logger=logger)
    trainer.fit(model, loader(X, y, shuffle=True))

    rows = [r for r in read_csv_metrics(logger.log_dir + "/metrics.csv") if r.get("convex/warmstart_before")]
    assert len(rows) == 3
    assert [int(r["epoch"]) for r in rows] == [9, 19, 29]
    for row in rows:
        assert float(row["convex/warmstart_after"]) <= float(row["convex/warmstart_before"])
        assert int(float(row["convex/warmstart_rounds"])) >= 1
        assert float(row["convex/warmstart_status"]) == 0.0  # optimal
    # the logged values are J of the network (independent float64 evaluation at the end)
    J, opt, f, fstar = ref.own_optimum(model.net, X, y, BETA)
    assert float(rows[-1]["convex/warmstart_after"]) == pytest.approx(J, rel=1e-6)
    # fixed point: re-reading the final network's patterns and solving gives nothing lower
    assert opt >= J * (1 - 1e-6)
    # and the network IS the optimum over its own patterns (prediction within the strong-convexity bound)
    assert abs(J - opt) <= 1e-6 * J
    assert 0.5 * np.square(f - fstar).sum() <= abs(J - opt) + 1e-7 * J
    assert all(h["converged"] for h in callback.history)


class OptimizerProbe(pl.Callback):
    """Runs after ActiveSetWarmStart at each epoch end: what state does Adam hold for the net?"""

    def __init__(self):
        self.records = []

    def on_train_epoch_end(self, trainer, pl_module):
        params = list(pl_module.net.parameters())
        state = trainer.optimizers[0].state
        self.records.append((trainer.current_epoch, sum(p in state for p in params)))


def test_optimizer_state_is_reset_after_a_change():
    X, y = teacher_data()
    model = model_for(X, K=4, m=3)
    callback = ActiveSetWarmStart(every_n_epochs=2, verbose=False)
    probe = OptimizerProbe()
    trainer = quiet_trainer(max_epochs=3, callbacks=[callback, probe])
    trainer.fit(model, loader(X, y))
    records = dict(probe.records)
    assert callback.history[0]["changed"]
    assert records[0] == 3  # Adam holds state for W1, w2, w3 while training
    assert records[1] == 0  # cleared by the warm start at the end of epoch 1


def test_lightning_pytorch_trainer_and_module():
    X, y = teacher_data()
    model = model_for(X, K=4, m=3, style="lightning.pytorch")
    callback = ActiveSetWarmStart(every_n_epochs=2, verbose=False)
    trainer = quiet_trainer("lightning.pytorch", max_epochs=4, callbacks=[callback])
    trainer.fit(model, loader(X, y))
    assert [h["epoch"] for h in callback.history] == [1, 3]
    assert all(h["after"] <= h["before"] for h in callback.history)
    assert float(trainer.callback_metrics["convex/warmstart_after"]) == pytest.approx(
        callback.history[-1]["after"], rel=1e-6)
    J, opt, _, _ = ref.own_optimum(model.net, X, y, BETA)
    assert opt >= J * (1 - 1e-6)


class StepOnly(ActiveSetWarmStart):
    def should_update(self, step_idx=None, epoch_idx=None):
        return step_idx == 6


def test_should_update_override_and_step_schedule():
    X, y = teacher_data()
    model = model_for(X, K=4, m=3)
    callback = StepOnly(at_train_end=False, verbose=False)
    trainer = quiet_trainer(max_epochs=2, callbacks=[callback])
    trainer.fit(model, loader(X, y))  # 8 steps per epoch
    assert [h["step"] for h in callback.history] == [7]
    assert callback.history[0]["after"] <= callback.history[0]["before"]

    model = model_for(X, K=4, m=3)
    callback = ActiveSetWarmStart(every_n_epochs=None, every_n_train_steps=4, at_train_end=False,
                                  verbose=False)
    quiet_trainer(max_epochs=2, callbacks=[callback]).fit(model, loader(X, y))
    assert [h["step"] for h in callback.history] == [4, 8, 12, 16]


def test_failed_solver_leaves_weights_and_warns(monkeypatch):
    def failing(program, **options):
        return Solution.from_variable(program, program.zeros(), status=SolveStatus.FAILED,
                                      seconds=0.0, iterations=0, solver="failing")

    monkeypatch.setitem(solvers.registry._BACKENDS, "failing",
                        solvers.Backend.from_function("failing", failing, solvers.Capabilities()))
    X, y = teacher_data()
    model = model_for(X, K=4, m=3)

    class Snapshot(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            self.before = copy.deepcopy(pl_module.net.state_dict())

    snap = Snapshot()
    callback = ActiveSetWarmStart(every_n_epochs=1, solver="failing", verbose=False)
    trainer = quiet_trainer(max_epochs=1, callbacks=[snap, callback])
    with pytest.warns(UserWarning, match="left as it was"):
        trainer.fit(model, loader(X, y))
    after = model.net.state_dict()
    assert all(torch.equal(snap.before[k], after[k]) for k in after)
    assert callback.history[0]["after"] == callback.history[0]["before"]
    assert callback.history[0]["status"] == "failed"


def test_weight_decay_is_refused():
    X, y = teacher_data()
    model = model_for(X, K=4, m=3)
    model.configure_optimizers = lambda: torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    trainer = quiet_trainer(max_epochs=1, callbacks=[ActiveSetWarmStart(verbose=False)])
    with pytest.raises(ValueError, match="weight_decay"):
        trainer.fit(model, loader(X, y))


def test_state_dict_is_plain_and_loads_with_weights_only(tmp_path):
    X, y = teacher_data()
    model = model_for(X, K=4, m=3)
    callback = ActiveSetWarmStart(every_n_epochs=1, extra_patterns=3, verbose=False)
    quiet_trainer(max_epochs=2, callbacks=[callback]).fit(model, loader(X, y))
    path = tmp_path / "state.pt"
    torch.save(callback.state_dict(), path)
    loaded = torch.load(path, weights_only=True)
    fresh = ActiveSetWarmStart(every_n_epochs=1, extra_patterns=3, seed=123)
    fresh.load_state_dict(loaded)
    assert fresh.history == callback.history
    assert torch.equal(fresh._generator.get_state(), callback._generator.get_state())


# -- crash and resume -----------------------------------------------------------------------------
class Crash(pl.Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated crash")


class SaveBeforeWarmStart(pl.Callback):
    """Writes a checkpoint at the end of one epoch from a callback placed BEFORE the warm start
    (so the checkpoint holds the weights and callback state from before that epoch's warm start)."""

    def __init__(self, path, epoch):
        self.path, self.epoch = path, epoch

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            trainer.save_checkpoint(self.path)


def _resume_setup(tmp_path, tag, when, crash=None):
    X, y = teacher_data(seed=3)
    model = model_for(X, K=4, m=3, seed=5)
    callback = ActiveSetWarmStart(every_n_epochs=2, extra_patterns=6, seed=7, verbose=False)
    (tmp_path / tag).mkdir(exist_ok=True)
    if when == "after":  # ModelCheckpoint always runs after the other callbacks
        saver = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / tag, save_top_k=-1, every_n_epochs=1,
                                             save_on_train_epoch_end=True, filename="{epoch}")
        callbacks = [callback, saver]
    else:
        callbacks = [SaveBeforeWarmStart(tmp_path / tag / "epoch=3.ckpt", 3), callback]
    callbacks += [Crash(crash)] if crash is not None else []
    trainer = quiet_trainer(max_epochs=6, callbacks=callbacks, enable_checkpointing=when == "after")
    return trainer, model, callback, loader(X, y)


@pytest.mark.parametrize("when", ["after", "before"],
                         ids=["checkpoint-after-warm-start", "checkpoint-before-warm-start"])
def test_checkpoint_resumes_exactly(tmp_path, when):
    """Crash at the start of epoch 4, resume from the checkpoint of epoch 3 (a warm-start epoch):
    the resumed fit ends bit-for-bit where the uninterrupted one does. A checkpoint written before
    the epoch's warm start gets that warm start replayed at train start."""
    trainer, model, callback, train = _resume_setup(tmp_path, "full", when)
    trainer.fit(model, train)
    full_state = {k: v.clone() for k, v in model.net.state_dict().items()}
    full_opt = trainer.optimizers[0].state_dict()

    trainer, model, _, train = _resume_setup(tmp_path, "crashed", when, crash=4)
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer.fit(model, train)
    ckpt = tmp_path / "crashed" / "epoch=3.ckpt"
    assert ckpt.exists()
    saved = torch.load(ckpt, weights_only=True)["callbacks"][callback.state_key]
    assert saved["latest_epoch"] == (3 if when == "after" else 1)

    trainer, model, resumed_cb, train = _resume_setup(tmp_path, "resumed", when)
    with torch.no_grad():  # a different initialisation: everything must come from the checkpoint
        for p in model.net.parameters():
            p.add_(1.0)
    trainer.fit(model, train, ckpt_path=str(ckpt))
    state = model.net.state_dict()
    assert all(torch.equal(full_state[k], state[k]) for k in state)
    assert [h["epoch"] for h in resumed_cb.history] == [h["epoch"] for h in callback.history] == [1, 3, 5]
    assert [h["after"] for h in resumed_cb.history] == [h["after"] for h in callback.history]
    opt = trainer.optimizers[0].state_dict()
    assert opt["state"].keys() == full_opt["state"].keys()
    for key, entry in opt["state"].items():
        for name, value in entry.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(full_opt["state"][key][name]))


# -- DDP ------------------------------------------------------------------------------------------
def test_ddp_spawn_ranks_identical_and_equal_to_single_process(tmp_path):
    """Two gloo CPU processes (ddp_spawn), n = 41 rows (DistributedSampler pads one): every rank
    ends each warm start with the same weights, equal to a single-process active_set_solve on
    all rows from the weights the warm start saw (spare re-seeding and sampled patterns included).
    """
    tests = Path(__file__).resolve().parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tests.parent), str(tests),
                                                       os.environ.get("PYTHONPATH", "")]))
    # a subprocess: ddp_spawn under pytest's output capture fails ("bad value(s) in fds_to_keep")
    job = subprocess.run([sys.executable, "-c", f"import hybrid_ddp_job as j; j.main({str(tmp_path)!r})"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert job.returncode == 0, job.stderr[-4000:]
    from hybrid_ddp_job import BETA as JOB_BETA, job_data

    X, y = job_data()
    load = lambda name: torch.load(tmp_path / name, weights_only=True)  # noqa: E731
    for epoch in (0, 1):
        post0, post1 = load(f"post-e{epoch}-r0.pt"), load(f"post-e{epoch}-r1.pt")
        assert all(torch.equal(post0[k], post1[k]) for k in post0), f"ranks differ after epoch {epoch}"
    # the first warm start (re-seeding spare branches) against a single-process run on all rows
    net = lc.ParallelReLU(3, 3, 4, bias=True)
    net.load_state_dict(load("pre-e0-r0.pt"))
    result = lc.active_set_solve(net, X, y, JOB_BETA, extra_patterns=4, spare="reseed",
                                 generator=torch.Generator().manual_seed(11))
    assert result.changed
    post = load("post-e0-r1.pt")
    single = net.state_dict()
    assert all(torch.equal(single[k], post[k]) for k in post)
    # the last warm start ends the fit at a fixed point of the full data
    final = lc.ParallelReLU(3, 3, 4, bias=True)
    final.load_state_dict(load("post-e1-r1.pt"))
    J, opt, _, _ = ref.own_optimum(final, X, y, JOB_BETA)
    assert opt >= J * (1 - 1e-6)
