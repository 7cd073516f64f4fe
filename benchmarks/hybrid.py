"""Wall time for Adam alone vs hybrid (Adam + ActiveSetWarmStart) to reach a J within 1e-4 of the
best convex value, on the six UCI sets of the paper's Table 1.

Setting (the paper's, Table 1): K = 10 branches, m = 7, beta = 0.1, batch floor(n/8), a bias
column, path-norm objective J = 1/2 ||f(X) - y||^2 + beta R in the sum form (MATH.md section 1)
on the training split of conxuntos.dat. Both methods run in the same Lightning Trainer with the
same module, data order and initialisation per seed; the clock runs from train start and
excludes only the benchmark's own float64 J evaluation after each epoch.

* Adam alone: ``--adam-epochs`` epochs at each of ``--adam-lrs``.
* Hybrid: Adam (lr 1e-2) for ``--hybrid-epochs`` epochs with ActiveSetWarmStart every
  ``--every`` epochs (defaults: 30 and 10).

"Best convex value" J* per set: the lowest J over every fixed point found: each hybrid run's warm
starts, and active_set_solve applied to each Adam run's final network (that polish is not timed
for either method). Target: J <= J* (1 + 1e-4). A method's time to target is the wall time at
the first epoch end where J meets it; "not reached" means not within its epochs.

    PYTHONPATH=. python benchmarks/hybrid.py --data-dir ../shared/data/uci --json runs/hybrid.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
import warnings

import torch
from torch.utils.data import DataLoader, TensorDataset

import lightning_convex as lc
from lightning_convex._compat import namespace
from lightning_convex.callbacks import ActiveSetWarmStart
from lightning_convex.data import UCI_SETS, load_uci
from lightning_convex.regressor import regressor_class

pl = namespace("pytorch_lightning")
BETA, K, M = 0.1, 10, 7
RTOL_TARGET = 1e-4


class Clock(pl.Callback):
    """Records (seconds since train start, J) at every epoch end, after every other callback's
    epoch-end work (place it last); its own J evaluation is excluded from the clock."""

    def __init__(self, X, y):
        self.X, self.y = X, y
        self.trace = []

    def on_train_start(self, trainer, pl_module):
        self.excluded = 0.0
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        now = time.perf_counter()
        J = lc.objective(pl_module.net, self.X, self.y, BETA)
        self.trace.append((now - self.start - self.excluded, J))
        self.excluded += time.perf_counter() - now


def run(X, y, seed, epochs, lr, hybrid, every, spare="zero", extra_patterns=0, max_rounds=100):
    pl.seed_everything(seed, verbose=False)
    net = lc.ParallelReLU(X.shape[1], M, K, bias=True)
    model = regressor_class("pytorch_lightning")(net, beta=BETA, lr=lr)
    loader = DataLoader(TensorDataset(X, y), batch_size=max(1, X.shape[0] // 8), shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    clock = Clock(X, y)
    warm = ActiveSetWarmStart(every_n_epochs=every, spare=spare, extra_patterns=extra_patterns,
                              max_rounds=max_rounds, verbose=False)
    callbacks = ([warm] if hybrid else []) + [clock]
    trainer = pl.Trainer(max_epochs=epochs, callbacks=callbacks, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                         devices=1, num_sanity_val_steps=0)
    trainer.fit(model, loader)
    history = callbacks[0].history if hybrid else []
    fixed_points = [h["after"] for h in history if h["converged"]]
    if not hybrid:  # the convex value reachable from Adam's final network (not timed)
        polished = lc.active_set_solve(net, X, y, BETA, max_rounds=60, warn=False)
        if polished.converged:
            fixed_points.append(polished.objective_after)
    return {"trace": clock.trace, "fixed_points": fixed_points, "history": history}


def time_to(trace, target):
    for seconds, J in trace:
        if J <= target:
            return seconds
    return None


def median_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--sets", nargs="*", default=list(UCI_SETS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--adam-epochs", type=int, default=1000)
    parser.add_argument("--adam-lrs", type=float, nargs="*", default=[1e-2, 1e-3])
    parser.add_argument("--hybrid-epochs", type=int, default=30)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--spare", default="zero", choices=["zero", "reseed"])
    parser.add_argument("--extra-patterns", type=int, default=0)
    parser.add_argument("--max-rounds", type=int, default=100)
    parser.add_argument("--json", default=None, help="write every trace here")
    args = parser.parse_args()

    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    torch.set_num_threads(1)
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"1 thread; seeds 0..{args.seeds - 1}; Adam {args.adam_epochs} epochs at lr {args.adam_lrs}; "
          f"hybrid {args.hybrid_epochs} epochs, warm start every {args.every}, spare={args.spare}, "
          f"extra_patterns={args.extra_patterns}, max_rounds={args.max_rounds}")
    results = {}
    table_a, table_b = [], []
    for name in args.sets:
        data = load_uci(name, args.data_dir)
        X, y = data.X_train, data.y_train
        runs = {"hybrid": [run(X, y, s, args.hybrid_epochs, 1e-2, True, args.every, args.spare,
                               args.extra_patterns, args.max_rounds) for s in range(args.seeds)]}
        for lr in args.adam_lrs:
            runs[f"adam lr={lr:g}"] = [run(X, y, s, args.adam_epochs, lr, False, args.every)
                                       for s in range(args.seeds)]
        adam_methods = [m for m in runs if m != "hybrid"]

        # A: one target per set, J* = the best fixed point any run found
        best = min(J for method in runs.values() for r in method for J in r["fixed_points"])
        target = best * (1 + RTOL_TARGET)
        summary = {"n": X.shape[0], "d": X.shape[1], "best_convex_J": best, "target": target, "methods": {}}
        for method, method_runs in runs.items():
            times = [time_to(r["trace"], target) for r in method_runs]
            summary["methods"][method] = {
                "time_to_target": times,
                "reached": sum(t is not None for t in times),
                "median_time_to_target": median_or_none(times),
                "best_J": min(J for r in method_runs for _, J in r["trace"]),
                "fit_seconds": [r["trace"][-1][0] for r in method_runs],
            }
        hyb = summary["methods"]["hybrid"]
        line = (f"| {name} | {X.shape[0]} | {best:.6f} | {hyb['reached']}/{args.seeds}, "
                f"{_fmt(hyb['median_time_to_target'])} | {statistics.median(hyb['fit_seconds']):.1f} |")
        for method in adam_methods:
            adam = summary["methods"][method]
            line += (f" {adam['reached']}/{args.seeds}, {_fmt(adam['median_time_to_target'])} | "
                     f"{adam['best_J']:.6f} | {statistics.median(adam['fit_seconds']):.1f} |")
        table_a.append(line)

        # B: per seed, the J the hybrid run itself reached; how long Adam (same seed) needs for it
        per_seed = []
        for seed, hybrid_run in enumerate(runs["hybrid"]):
            if not hybrid_run["fixed_points"]:
                continue
            own_target = min(hybrid_run["fixed_points"]) * (1 + RTOL_TARGET)
            t_h = time_to(hybrid_run["trace"], own_target)
            entry = {"seed": seed, "target": own_target, "hybrid": t_h}
            for method in adam_methods:
                adam_run = runs[method][seed]
                entry[method] = time_to(adam_run["trace"], own_target)
                entry[method + " fit"] = adam_run["trace"][-1][0]
            per_seed.append(entry)
        summary["per_seed_own_target"] = per_seed
        t_h = median_or_none([e["hybrid"] for e in per_seed])
        line = f"| {name} | {len(per_seed)} | {_fmt(t_h)} |"
        for method in adam_methods:
            reached = [e for e in per_seed if e[method] is not None]
            # a lower bound where Adam never got there: its whole fit time
            ratios = [(e[method] if e[method] is not None else e[method + " fit"]) / e["hybrid"]
                      for e in per_seed if e["hybrid"]]
            bound = "" if len(reached) == len(per_seed) else ">= "
            line += (f" {len(reached)}/{len(per_seed)} | "
                     f"{bound}{min(ratios):.0f}x |" if ratios else " - | - |")
        table_b.append(line)
        results[name] = {"summary": summary, "runs": runs}
        print(table_a[-1], flush=True)
        print(table_b[-1], flush=True)

    print()
    print("A. Target J*(1 + 1e-4), J* = the lowest fixed point found by any run on the set "
          "(reached count, median seconds to target over the runs that reached it):")
    header = ("| set | n | J* | hybrid: reached, median s | hybrid fit s |"
              + "".join(f" Adam lr={lr:g}: reached, median s | best J seen | fit s |" for lr in args.adam_lrs))
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    print("\n".join(table_a))
    print()
    print("B. Per seed, target = the hybrid run's own best fixed point (1 + 1e-4); the same seed's "
          "Adam run (median seconds for the hybrid; smallest Adam/hybrid time ratio over seeds, "
          "'>=' where Adam never reached it and its whole fit time is used):")
    header = ("| set | seeds | hybrid median s |"
              + "".join(f" Adam lr={lr:g} reached | speedup |" for lr in args.adam_lrs))
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    print("\n".join(table_b))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "results": results}, fh, indent=1)


def _fmt(seconds):
    return "not reached" if seconds is None else f"{seconds:.2f}"


if __name__ == "__main__":
    main()
