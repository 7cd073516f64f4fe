"""ConvexCertificate at scale (issue 13, item 4): cost per certificate in epochs, memory, and the
logged bound over epochs, on Fashion-MNIST.

Setting: ``--n`` training rows (class-stratified subsample), one-vs-rest target of class
``--cls``, standardised pixels, bias, beta = ``--beta``, K = ``--K`` branches of width ``--m``,
depth 3, the library's ``ParallelReLURegressor`` (Adam, lr ``--lr``, batch ``--batch-size``).

The same fit (same seed, same data) runs twice in one process: without the callback, then with
``ConvexCertificate(every_n_epochs=1)`` at its defaults (``--cold``: also a third fit whose
callback forgets its engine state before every certificate, to compare against starting cold).
Reported per run: the training seconds of every epoch (the callbacks' ``last_epoch_seconds``
timing, which leaves the callbacks' own work out), every certificate's seconds, bound and gap,
the stage of the engine's basis (built in pieces over the first certificates), the share
1/2 sum y_i^2 of the rows no pattern reaches, and the process's peak resident memory. The cost of a certificate in epochs is its seconds over
the median epoch of the fit without it.

    python benchmarks/certificate_scale.py --n 10000 --epochs 12 --json scale_n10000.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
import warnings

import torch
from torch.utils.data import DataLoader, TensorDataset

import lightning_convex as lc
from lightning_convex._compat import namespace
from lightning_convex.callbacks import ConvexCertificate
from lightning_convex.fashion_mnist import load_fashion_mnist
from lightning_convex.regressor import regressor_class

warnings.filterwarnings("ignore")


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


class EpochTimer(namespace("pytorch_lightning").Callback):
    """The training seconds of every epoch (from the epoch's start to its last batch)."""

    def __init__(self):
        self.seconds = []

    def on_train_epoch_start(self, trainer, pl_module):
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._last = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        self.seconds.append(self._last - self._start)


def free_share(cert) -> float:
    """1/2 sum of y_i^2 over the rows no pattern of the certificate's set reaches (M_pj,i = 0 for
    every p, j): a part of OPT(S) that every point of S pays, and of the bound (computed after the
    certificate, outside its timing)."""
    S = cert.patterns
    M = S.D1 if S.D2 is None else S.D1 & S.D2[:, :, None]
    free = ~M.any(dim=2).any(dim=0)
    return 0.5 * float(Recording.targets[free.cpu()].double().square().sum())


class Recording(ConvexCertificate):
    """ConvexCertificate at its defaults, keeping every certificate (``cold``: the engine state
    is dropped before each one)."""

    def __init__(self, cold=False, **kwargs):
        super().__init__(every_n_epochs=1, **kwargs)
        self.cold = cold
        self.records = []

    def certify(self, trainer, pl_module):
        if self.cold:
            self.last_certificate = None
        budget = self.budget()
        cert = super().certify(trainer, pl_module)
        self.records.append({"epoch": int(trainer.current_epoch), "budget": budget, "seconds": cert.seconds,
                             "primal": cert.primal, "lower_bound": cert.lower_bound,
                             "relative_gap": cert.relative_gap, "method": cert.method,
                             "v": cert.info.get("v"), "iterations": cert.info.get("iterations"),
                             "total_iterations": cert.info.get("total_iterations"),
                             "basis": cert.info.get("basis", "done"), "free_share": free_share(cert)})
        print(json.dumps({"certificate": self.records[-1]}), flush=True)
        return cert


def fit(X, y, args, callback=None):
    torch.manual_seed(args.seed)
    net = lc.ParallelReLU(X.shape[1], args.m, args.K, bias=True)
    module = regressor_class("pytorch_lightning")(net, beta=args.beta, lr=args.lr)
    timer = EpochTimer()
    pl = namespace("pytorch_lightning")
    trainer = pl.Trainer(max_epochs=args.epochs, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1,
                         callbacks=[timer] + ([callback] if callback is not None else []))
    loader = DataLoader(TensorDataset(X, y), batch_size=args.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(args.seed))
    start = time.perf_counter()
    trainer.fit(module, loader)
    return timer.seconds, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--cls", type=int, default=0)
    parser.add_argument("--K", type=int, default=10)
    parser.add_argument("--m", type=int, default=10)
    parser.add_argument("--beta", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cold", action="store_true", help="also a fit whose certificates start cold")
    parser.add_argument("--json", default=None, help="write the summary here")
    args = parser.parse_args(argv)

    ds = load_fashion_mnist()
    if args.n < ds.n:
        ds = ds.subsample(args.n, 100, seed=args.seed)
    X, y = ds.X_train.float(), ds.targets(args.cls).float()
    Recording.targets = y
    print(json.dumps({"args": vars(args), "threads": torch.get_num_threads(), "load_avg": os.getloadavg()}),
          flush=True)
    summary = {"args": vars(args), "threads": torch.get_num_threads(), "load_before": os.getloadavg()}
    plain, plain_total = fit(X, y, args)
    print(json.dumps({"plain_epochs": plain, "total": plain_total}), flush=True)
    runs = [("warm", Recording())] + ([("cold", Recording(cold=True))] if args.cold else [])
    for name, callback in runs:
        epochs, total = fit(X, y, args, callback)
        epoch = statistics.median(plain)
        costs = [r["seconds"] / epoch for r in callback.records]
        summary[name] = {"epochs": epochs, "total": total, "certificates": callback.records,
                         "median_plain_epoch": epoch, "cost_in_epochs": costs,
                         "max_cost_in_epochs": max(costs), "median_cost_in_epochs": statistics.median(costs)}
        print(json.dumps({name: {"total": total, "median_cost_in_epochs": statistics.median(costs),
                                 "max_cost_in_epochs": max(costs)}}), flush=True)
    summary.update(plain_epochs=plain, plain_total=plain_total, peak_rss_gb=peak_rss_gb(),
                   load_after=os.getloadavg())
    print(json.dumps({"peak_rss_gb": summary["peak_rss_gb"], "load_after": summary["load_after"]}), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(summary, fh, indent=1)


if __name__ == "__main__":
    main()
