"""``lightning-convex demo``: SGD vs hybrid convex/SGD training on scikit-learn's diabetes set,
each certified by duality gaps along the way.

Both runs start from the same ParallelReLU (K = 10 branches of width m = 3, a bias column,
path norm, beta = 0.1) and train with Adam on mini-batches of 64 for 40 epochs; both carry a
:class:`~lightning_convex.callbacks.ConvexCertificate`. The hybrid run also carries an
:class:`~lightning_convex.callbacks.ActiveSetWarmStart` (every 10 epochs, at most 5 active-set
rounds each, and at the end of the fit). Certificates are relative to each
network's own active set (MATH.md section 8): the lower bound is on OPT(S(theta)).
"""

from __future__ import annotations

import copy
import sys
import time
import warnings
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from .. import ParallelReLU, ParallelReLURegressor, objective
from ..callbacks import ActiveSetWarmStart
from ..data import load_diabetes
from .recording import CsvRows, RecordingCertificate, pyplot

COLUMNS = ["method", "epoch", "seconds", "objective", "lower_bound", "gap", "relative_gap"]


def _quiet_lightning():
    import logging

    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LitLogger.*")
    warnings.filterwarnings("ignore", message=".*but have no logger configured.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*defined a `validation_step` but have no `val_dataloader`.*")


def run(method: str, net: ParallelReLU, X, y, beta: float, epochs: int, certify_every: int,
        warm_every: int, batch_size: int, lr: float, progress: bool, solver: str, max_rounds: int):
    """Fit one method; returns (records, final network, seconds)."""
    import pytorch_lightning as pl

    certificate = RecordingCertificate(every_n_epochs=certify_every)
    callbacks = []
    if method == "hybrid":
        callbacks.append(ActiveSetWarmStart(every_n_epochs=warm_every, solver=solver,
                                            max_rounds=max_rounds, verbose=False))
    callbacks.append(certificate)  # after the warm start, so an epoch's certificate sees its result
    module = ParallelReLURegressor(net, beta, lr=lr)
    loader = DataLoader(TensorDataset(X, y), batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    if progress and not sys.stdout.isatty():
        # a log file, not a terminal: one bar per epoch, refreshed once, instead of a frame per batch
        callbacks.append(pl.callbacks.TQDMProgressBar(refresh_rate=len(loader), leave=True))
    trainer = pl.Trainer(
        max_epochs=epochs, callbacks=callbacks, logger=False, enable_checkpointing=False,
        enable_model_summary=False, enable_progress_bar=progress, accelerator="cpu", devices=1,
    )
    start = time.perf_counter()
    trainer.fit(module, loader)
    seconds = time.perf_counter() - start
    for record in certificate.records:
        record["method"] = method
    return certificate.records, net, seconds


def plot(records, path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    colors = {"sgd": "tab:blue", "hybrid": "tab:orange"}
    for method in ("sgd", "hybrid"):
        rows = [r for r in records if r["method"] == method]
        if not rows:
            continue
        t = [r["seconds"] for r in rows]
        ax.plot(t, [r["objective"] for r in rows], "-o", ms=3, color=colors[method],
                label=f"{method}: objective J")
        ax.plot(t, [r["lower_bound"] for r in rows], "--", color=colors[method],
                label=f"{method}: certified lower bound")
    ax.set_xlabel("wall time (s)")
    ax.set_ylabel("J = 1/2||f(X)-y||^2 + beta R")
    ax.set_yscale("log")
    ax.set_title("diabetes: SGD vs hybrid, with duality-gap certificates (own active set)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(out="lightning-convex-demo", epochs=40, certify_every=10, warm_every=10, beta=0.1,
         branches=10, hidden=3, batch_size=64, lr=1e-2, seed=0, solver="auto", max_rounds=5,
         progress=True) -> int:
    _quiet_lightning()
    torch.manual_seed(seed)
    data = load_diabetes()
    X, y = data.X_train, data.y_train
    out = Path(out)
    demo_csv = CsvRows(out / "demo.csv", COLUMNS)  # fails now, before any training, when unwritable
    initial = ParallelReLU(X.shape[1], hidden, branches, bias=True)
    print(f"diabetes (scikit-learn): n = {X.shape[0]}, d = {X.shape[1]} (+ bias), K = {branches}, "
          f"m = {hidden}, beta = {beta}; objectives in the sum form J = 1/2||f(X)-y||^2 + beta R")
    records, finals = [], {}
    for method in ("sgd", "hybrid"):
        rows, net, seconds = run(method, copy.deepcopy(initial), X, y, beta, epochs, certify_every,
                                 warm_every, batch_size, lr, progress, solver, max_rounds)
        records += rows
        for row in rows:
            demo_csv.append(row)
        finals[method] = (objective(net, X, y, beta), seconds)
    print()
    print(f"{'method':<7} {'epoch':>5} {'time(s)':>8} {'J':>12} {'lower bound':>12} {'gap':>10}")
    for r in records:
        print(f"{r['method']:<7} {r['epoch']:>5} {r['seconds']:>8.2f} {r['objective']:>12.6f} "
              f"{r['lower_bound']:>12.6f} {r['gap']:>10.2e}")
    print()
    for method, (J, seconds) in finals.items():
        print(f"final {method:<7} J = {J:.6f}  ({seconds:.1f} s)")
    csv_path = demo_csv.close()
    png_path = plot(records, out / "demo.png")
    print(f"wrote {csv_path} and {png_path}")
    return 0
