"""Hybrid training on Fashion-MNIST at its defaults, against Adam alone at the same wall time
(issue 13's done-when; BENCHMARKS.md, "Hybrid training on Fashion-MNIST").

Setting: ``--n`` training rows (class-stratified subsample, seed ``--seed``), one-vs-rest target
y = 1[label = ``--cls``], standardised pixels plus a bias column, beta = 1, K = 10 branches of
width m = 10, batch 256, Adam lr 1e-3, loss of ``ParallelReLURegressor`` (its epoch sum is J in
the sum form of MATH.md section 1).

* hybrid: a ``--epochs``-epoch Lightning fit with ``ActiveSetWarmStart(every_n_epochs=--every)``
  and nothing else set (its defaults: ``solver="auto"``, the default budget per warm start);
* Adam alone: the same module, initialisation and data order, trained until it has used the
  hybrid fit's wall time (and one epoch more).

Both run with ``--threads`` torch threads (default 1: on a loaded 2-core machine two threads
contend and the Adam side's speed then varies tenfold between runs). The clock runs from train start and leaves out only this script's own float64 J evaluation at
each epoch end (after the warm start where there is one). Peak memory: the process's resident
peak during each fit (Linux ``VmHWM``, reset before it). Printed per draw: the fit's seconds,
peak memory, each warm start (J before and after, seconds, why it stopped), and J of the hybrid
at its end against Adam's J at the last epoch end within the same wall time (the ratio; below
1 means the hybrid is ahead).

    python benchmarks/hybrid_fashion.py                                    # n 1500, class 0, seed 0
    python benchmarks/hybrid_fashion.py --draw 3:1 --draw 7:2 --json hybrid_fashion.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning_convex as lc  # noqa: E402
from lightning_convex._compat import namespace  # noqa: E402
from lightning_convex.callbacks import ActiveSetWarmStart  # noqa: E402
from lightning_convex.fashion_mnist import load_fashion_mnist  # noqa: E402
from lightning_convex.regressor import regressor_class  # noqa: E402

pl = namespace("pytorch_lightning")
BETA, K, M, BATCH, LR = 1.0, 10, 10, 256, 1e-3


def _status_bytes(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak():
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


class Clock(pl.Callback):
    """(seconds since train start, J) at every epoch end, after the other callbacks' epoch-end
    work (place it last); its own J evaluation is left out of the clock. With ``stop_after``,
    ends the fit at the first epoch end past that many seconds."""

    def __init__(self, X, y, stop_after=None):
        self.X, self.y, self.stop_after = X, y, stop_after
        self.trace = []

    def on_train_start(self, trainer, pl_module):
        self.excluded = 0.0
        self.start = time.perf_counter()
        self.trace = [(0.0, lc.objective(pl_module.net, self.X, self.y, BETA))]
        self.excluded = time.perf_counter() - self.start

    def on_train_epoch_end(self, trainer, pl_module):
        now = time.perf_counter()
        J = lc.objective(pl_module.net, self.X, self.y, BETA)
        seconds = now - self.start - self.excluded
        self.trace.append((seconds, J))
        self.excluded += time.perf_counter() - now
        if self.stop_after is not None and seconds > self.stop_after:
            trainer.should_stop = True


def fit(X, y, seed, epochs, warm_start=None, stop_after=None):
    """One Lightning fit; returns (clock trace, wall seconds of the fit, peak resident bytes)."""
    pl.seed_everything(seed, verbose=False)
    net = lc.ParallelReLU(X.shape[1], M, K, bias=True)
    model = regressor_class("pytorch_lightning")(net, beta=BETA, lr=LR)
    loader = DataLoader(TensorDataset(X, y), batch_size=BATCH, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    clock = Clock(X, y, stop_after)
    callbacks = ([warm_start] if warm_start is not None else []) + [clock]
    trainer = pl.Trainer(max_epochs=epochs, callbacks=callbacks, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1,
                         num_sanity_val_steps=0)
    reset_peak()
    base = _status_bytes("VmRSS")
    started = time.perf_counter()
    trainer.fit(model, loader)
    seconds = time.perf_counter() - started
    return clock.trace, seconds, _status_bytes("VmHWM"), _status_bytes("VmHWM") - base


def at_time(trace, seconds):
    """J at the last epoch end at or before ``seconds`` (the trace starts at 0)."""
    best = trace[0]
    for point in trace:
        if point[0] <= seconds:
            best = point
    return best


def run_draw(ds, cls, seed, args):
    X, y = ds.X_train.float(), ds.targets(cls).float()
    warm = ActiveSetWarmStart(every_n_epochs=args.every, verbose=False)
    for name in ("BUDGET_FLOOR", "BUDGET_EPOCHS"):  # only to measure other budgets; default: unset
        value = getattr(args, name.lower())
        if value is not None:
            setattr(warm, name, value)
    trace_h, seconds_h, peak_h, grown_h = fit(X, y, seed, args.epochs, warm_start=warm)
    end_h = trace_h[-1]
    trace_a, seconds_a, peak_a, _ = fit(X, y, seed, 100000, stop_after=end_h[0])
    adam_t, adam_J = at_time(trace_a, end_h[0])
    history = [{k: h[k] for k in ("epoch", "before", "after", "seconds", "rounds", "stop_reason", "status",
                                  "time_limit")} for h in warm.history]
    first = history[0] if history else None
    row = {
        "n": X.shape[0], "cls": cls, "seed": seed, "load": os.getloadavg(), "threads": torch.get_num_threads(),
        "hybrid_fit_seconds": seconds_h, "hybrid_peak_gb": peak_h / 1e9, "hybrid_peak_growth_gb": grown_h / 1e9,
        "hybrid_trace": trace_h, "warm_starts": history, "hybrid_J": end_h[1], "hybrid_seconds": end_h[0],
        "adam_trace": trace_a, "adam_J_same_time": adam_J, "adam_seconds": adam_t,
        "adam_epochs": len(trace_a) - 1, "ratio": end_h[1] / adam_J,
        "monotone": all(h["after"] <= h["before"] for h in history),
        "first_drop": None if first is None else 1.0 - first["after"] / first["before"],
    }
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1500)
    p.add_argument("--draw", action="append", default=None, help="CLASS:SEED (repeatable; default 0:0)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--every", type=int, default=2)
    p.add_argument("--budget-floor", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--budget-epochs", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for everything (1: on a shared 2-core machine two threads contend)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    full = load_fashion_mnist()
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load {os.getloadavg()}", flush=True)
    rows = []
    for draw in args.draw or ["0:0"]:
        cls, seed = (int(x) for x in draw.split(":"))
        ds = full.subsample(args.n, 100, seed=seed)
        row = run_draw(ds, cls, seed, args)
        rows.append(row)
        starts = "; ".join(f"epoch {h['epoch']}: {h['before']:.4g} -> {h['after']:.4g} in {h['seconds']:.1f} s "
                           f"({h['stop_reason']}, budget {h['time_limit']:.0f} s)" for h in row["warm_starts"])
        print(f"class {cls} seed {seed}: hybrid fit {row['hybrid_fit_seconds']:.1f} s, peak "
              f"{row['hybrid_peak_gb']:.2f} GB; warm starts: {starts}; first drop {row['first_drop']:.1%}; "
              f"hybrid J {row['hybrid_J']:.4g} at {row['hybrid_seconds']:.1f} s vs Adam J "
              f"{row['adam_J_same_time']:.4g} at {row['adam_seconds']:.1f} s ({row['adam_epochs']} epochs): "
              f"ratio {row['ratio']:.3f}; load {os.getloadavg()[0]:.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return rows


if __name__ == "__main__":
    main()
