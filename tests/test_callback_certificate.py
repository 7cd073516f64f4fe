"""ConvexCertificate: logging, schedules, both Lightning import styles, DDP, checkpoints, errors."""

import json
import math
import os
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lightning_convex as lc
from lightning_convex._compat import available_namespaces, namespace
from lightning_convex.callbacks import ConvexCertificate
from lightning_convex.regressor import regressor_class

warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*no logger configured.*")

KEYS = ("convex/primal", "convex/lower_bound", "convex/gap", "convex/relative_gap")
BETA = 0.1


def make_data(n=61, d=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=gen)
    y = torch.relu(X[:, 0] - X[:, 1]) + 0.1 * torch.randn(n, generator=gen)
    return X, y


def make_module(style="pytorch_lightning", seed=0, K=4, m=3, d=3, **kwargs):
    torch.manual_seed(seed)
    net = lc.ParallelReLU(d, m, K, bias=True)
    return regressor_class(style)(net, beta=BETA, lr=1e-2, **kwargs)


def make_trainer(style="pytorch_lightning", callbacks=(), **kwargs):
    pl = namespace(style)
    defaults = dict(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, accelerator="cpu", devices=1)
    defaults.update(kwargs)
    return pl.Trainer(callbacks=list(callbacks), **defaults)


def loader(X, y, batch_size=16, shuffle=False):
    return DataLoader(TensorDataset(X, y), batch_size=batch_size, shuffle=shuffle)


# ------------------------------------------------------------------------------------------------
# logging and equality with the functional certificate
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("style", available_namespaces())
def test_logs_the_functional_certificate(style):
    X, y = make_data()
    module = make_module(style)
    callback = ConvexCertificate(search=4, extra_patterns=2, seed=5)
    trainer = make_trainer(style, [callback], num_sanity_val_steps=2, limit_val_batches=1)
    trainer.fit(module, loader(X, y), loader(X, y))
    assert callback.num_certificates == 2  # one per epoch, none during sanity checking
    # the last certificate used the seed + index of its draw
    expected = lc.certify(module.net, X, y, BETA, extra_patterns=2, search=4,
                          generator=torch.Generator().manual_seed(5 + 1))
    metrics = trainer.callback_metrics
    for key in KEYS + ("convex/max_violation",):
        assert key in metrics
    for name, value in expected.metrics().items():
        assert math.isclose(float(metrics[f"convex/{name}"]), value, rel_tol=1e-9, abs_tol=1e-12)
    assert expected.scope.startswith("active set + ") and expected.scope.endswith(" sampled")
    assert expected.lower_bound <= expected.primal


def test_loggers_and_progress_bar_receive_the_values(tmp_path):
    pl = namespace("pytorch_lightning")
    X, y = make_data()
    callback = ConvexCertificate()
    logger = pl.loggers.CSVLogger(tmp_path, name="run")
    trainer = make_trainer(callbacks=[callback], logger=logger, max_epochs=2)
    trainer.fit(make_module(), loader(X, y))
    assert "convex/gap" in trainer.progress_bar_metrics
    text = open(os.path.join(logger.log_dir, "metrics.csv")).read()
    for key in KEYS:
        assert key in text
    assert "convex/max_violation" not in trainer.callback_metrics  # no search


def test_every_n_train_steps_and_policy_override():
    X, y = make_data()
    callback = ConvexCertificate(every_n_epochs=None, every_n_train_steps=3)
    trainer = make_trainer(callbacks=[callback], max_epochs=2)
    trainer.fit(make_module(), loader(X, y))  # 4 batches per epoch: 8 steps -> steps 3, 6
    assert callback.num_certificates == 2

    class OnlySecondEpoch(ConvexCertificate):
        def should_certify(self, step_idx=None, epoch_idx=None):
            return epoch_idx == 1

    callback = OnlySecondEpoch()
    make_trainer(callbacks=[callback], max_epochs=3).fit(make_module(), loader(X, y))
    assert callback.num_certificates == 1


def test_data_argument_and_shuffled_loader():
    X, y = make_data()
    callback = ConvexCertificate(data=(X, y))
    module = make_module()
    make_trainer(callbacks=[callback], max_epochs=1).fit(module, loader(X, y, shuffle=True))
    cert = lc.certify(module.net, X, y, BETA)
    assert math.isclose(callback.last_certificate.lower_bound, cert.lower_bound, rel_tol=1e-12)


class _KeepAll(ConvexCertificate):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.kept = []

    def on_certificate(self, trainer, pl_module, certificate, on_step):
        super().on_certificate(trainer, pl_module, certificate, on_step)
        self.kept.append((certificate, [p.detach().double().clone() for p in pl_module.net.parameters()]))


def test_engine_state_is_carried_between_epochs_and_every_bound_is_valid():
    """method="engine": each certificate continues the previous one's iterate (the iteration
    counts add up), and each bound is below OPT(S) of that epoch's network (independent CVXPY)."""
    from conftest import reference_optimum

    X, y = make_data(n=40)
    callback = _KeepAll(method="engine", max_iter=4)
    module = make_module(K=3, m=2)
    make_trainer(callbacks=[callback], max_epochs=3).fit(module, loader(X, y))
    assert [c.info["total_iterations"] for c, _ in callback.kept] == [4, 8, 12]
    assert [c.info["start"] for c, _ in callback.kept] == ["network", "carried", "carried"]
    for cert, params in callback.kept:
        net = lc.ParallelReLU(3, 2, 3, bias=True).double()
        with torch.no_grad():
            for p, value in zip(net.parameters(), params):
                p.copy_(value)
        opt = reference_optimum(X.double(), y.double(), lc.patterns_of(net, X.double()), BETA)
        assert cert.lower_bound <= opt + 1e-7 * (1 + abs(opt))
        assert cert.primal >= opt - 1e-7 * (1 + abs(opt))


# ------------------------------------------------------------------------------------------------
# checkpoints
# ------------------------------------------------------------------------------------------------
def test_resume_restores_callback_state(tmp_path):
    pl = namespace("pytorch_lightning")
    X, y = make_data()
    callback = ConvexCertificate()
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer = make_trainer(callbacks=[callback, ckpt], max_epochs=2, enable_checkpointing=True)
    trainer.fit(make_module(), loader(X, y))
    saved = callback.state_dict()
    assert saved["num_certificates"] == 2
    # weights_only loading: the state holds plain values only
    state = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert any(v == saved for v in state["callbacks"].values())

    resumed = ConvexCertificate()
    module = make_module(seed=1)
    trainer = make_trainer(callbacks=[resumed], max_epochs=3, enable_checkpointing=True,
                           default_root_dir=tmp_path)
    trainer.fit(module, loader(X, y), ckpt_path=str(tmp_path / "last.ckpt"))
    assert resumed.num_certificates == 3  # 2 restored + the third epoch
    assert resumed.state_dict()["latest_epoch"] == 2
    cert = lc.certify(module.net, X, y, BETA)
    assert math.isclose(resumed.last_metrics["lower_bound"], cert.lower_bound, rel_tol=1e-12)


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------
class _Plain(namespace("pytorch_lightning").LightningModule):
    def __init__(self, nets, beta=BETA, weight_decay=0.0):
        super().__init__()
        self.nets = nn.ModuleList(nets)
        self.beta = beta
        self.weight_decay = weight_decay

    def training_step(self, batch, batch_idx):
        X, y = batch
        f = sum(net(X) for net in self.nets) if self.nets else torch.zeros_like(y)
        return 0.5 * (f - y).square().sum() + sum(self.beta * n.regularizer() for n in self.nets) + 0 * self.w

    def setup(self, stage):
        self.w = nn.Parameter(torch.zeros(()))

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3, weight_decay=self.weight_decay)


def test_errors():
    X, y = make_data()
    with pytest.raises(ValueError, match="contains no lightning_convex.ParallelReLU"):
        make_trainer(callbacks=[ConvexCertificate()]).fit(_Plain([]), loader(X, y))
    two = [lc.ParallelReLU(3, 2, 2), lc.ParallelReLU(3, 2, 2)]
    with pytest.raises(ValueError, match="contains 2 ParallelReLU"):
        make_trainer(callbacks=[ConvexCertificate()]).fit(_Plain(two), loader(X, y))
    with pytest.raises(ValueError, match="weight_decay"):
        make_trainer(callbacks=[ConvexCertificate()]).fit(
            _Plain([lc.ParallelReLU(3, 2, 2)], weight_decay=0.01), loader(X, y))
    module = _Plain([lc.ParallelReLU(3, 2, 2)])
    module.beta = None
    with pytest.raises(ValueError, match="no regularization weight"):
        make_trainer(callbacks=[ConvexCertificate()]).fit(module, loader(X, y))
    bad = X.clone()
    bad[5, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        make_trainer(callbacks=[ConvexCertificate(data=(bad, y))]).fit(make_module(), loader(X, y))
    with pytest.raises(ValueError, match="every_n_epochs"):
        ConvexCertificate(every_n_epochs=-1)
    with pytest.raises(ValueError, match="sets 'patterns' itself"):
        ConvexCertificate(patterns=None)


# ------------------------------------------------------------------------------------------------
# DDP: two CPU processes (gloo, ddp_spawn) on n not divisible by 2
# ------------------------------------------------------------------------------------------------
class _Recording(ConvexCertificate):
    """Writes every rank's certificates to a file (ddp_spawn runs them in child processes)."""

    def __init__(self, out_dir, **kwargs):
        super().__init__(**kwargs)
        self.out_dir = str(out_dir)

    def on_certificate(self, trainer, pl_module, certificate, on_step):
        super().on_certificate(trainer, pl_module, certificate, on_step)
        path = os.path.join(self.out_dir, f"rank{trainer.global_rank}.jsonl")
        with open(path, "a") as fh:
            fh.write(json.dumps({**certificate.metrics(), "n": certificate.n,
                                 "refined": certificate.refined}) + "\n")


def test_ddp_spawn_equals_single_process(tmp_path):
    X, y = make_data(n=61)
    module = make_module(K=4, m=3)
    callback = _Recording(tmp_path, search=3, extra_patterns=2, seed=3, method="fit", support=24)
    trainer = make_trainer(callbacks=[callback], max_epochs=1, strategy="ddp_spawn", devices=2,
                           accelerator="cpu")
    trainer.fit(module, loader(X, y))
    rows = {r: [json.loads(line) for line in open(tmp_path / f"rank{r}.jsonl")] for r in (0, 1)}
    assert rows[0] == rows[1]  # every rank holds the same certificate
    got = rows[0][-1]
    assert got["n"] == 61
    # the main process got rank 0's weights back: certify them on all rows in one process
    expected = lc.certify(module.net, X, y, BETA, extra_patterns=2, search=3, method="fit", support=24,
                          generator=torch.Generator().manual_seed(3))
    for name, value in expected.metrics().items():
        assert math.isclose(got[name], value, rel_tol=1e-6, abs_tol=1e-9), (name, got[name], value)
        # and the logged values came back to the main process
        assert math.isclose(float(trainer.callback_metrics[f"convex/{name}"]), value, rel_tol=1e-6, abs_tol=1e-9)
    assert got["refined"] > 0  # the gathered-row refinement ran under DDP too
