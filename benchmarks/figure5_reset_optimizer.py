"""The Figure-5 hybrid on a few classes, with and without ``reset_optimizer`` (BENCHMARKS.md,
"Figure 5": why J jumps in the epoch after a warm start).

Runs ``lightning-convex reproduce figure5``'s hybrid fit (its default :class:`Settings`, the same
data, initial networks and batches) for the classes given, once with the callback's default
``reset_optimizer=True`` and once with ``False``, and prints J (sum form, float64, all training
rows) at every epoch end. Only the optimizer reset differs between the two runs.

    python benchmarks/figure5_reset_optimizer.py --cls 0 --cls 2 --cls 6
"""

from __future__ import annotations

import argparse

import torch

from lightning_convex.callbacks import ActiveSetWarmStart
from lightning_convex.experiments import figure5
from lightning_convex.fashion_mnist import load_fashion_mnist


def hybrid_callback(reset: bool, original=figure5.warm_start_callback):
    """figure5's warm-start callback with ``reset_optimizer`` set; everything else as there."""
    def build(settings: figure5.Settings) -> ActiveSetWarmStart:
        default = original(settings)
        return ActiveSetWarmStart(every_n_epochs=default.every_n_epochs, solver=default.solver,
                                  time_limit=default.time_limit, max_rounds=default.max_rounds,
                                  beta=settings.beta, verbose=False, reset_optimizer=reset)
    return build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cls", type=int, action="append", help="classes (repeatable; default 0)")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    classes = args.cls or [0]
    settings = figure5.Settings()
    torch.set_num_threads(settings.threads)
    figure5._quiet_lightning()
    data = load_fashion_mnist(args.data_dir).subsample(settings.n, settings.n_test, seed=settings.seed)
    initial = figure5.initial_networks(data, settings)
    original = figure5.warm_start_callback
    try:
        for reset in (True, False):
            figure5.warm_start_callback = hybrid_callback(reset)
            for c in classes:
                records, _ = figure5.fit_class("hybrid", c, data, initial[c], settings, lambda row: None)
                trace = " ".join(f"{r['epoch']}:{r['objective']:.1f}" for r in records)
                print(f"reset_optimizer={reset} class {c}: J by epoch {trace}", flush=True)
    finally:
        figure5.warm_start_callback = original


if __name__ == "__main__":
    main()
