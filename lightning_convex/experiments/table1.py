"""``lightning-convex reproduce table1``: the paper's Table 1 on its six UCI sets.

Setting (paper): (m, K, beta, batch) = (7, 10, 0.1, floor(n/8)), regression on the class label,
a bias column; the train/test split of ``conxuntos.dat``.

- ``sgd``: Adam (lr 1e-2) on mini-batches of floor(n/8) rows for ``epochs`` epochs through
  :class:`~lightning_convex.ParallelReLURegressor` (a Lightning fit).
- ``convex``: our convex route from that network: :func:`~lightning_convex.active_set_solve`
  over its own K patterns plus ``extra_patterns`` sampled ones (Remark 3) and the violators of a
  certificate search, iterated to a fixed point and mapped back into the same K = 10 branches.
  ``convex_seconds`` is the time of that step alone.

Objectives are the training objective in the paper's sum form J = 1/2 ||f(X) - y||^2 + beta R
(path norm) over the n training rows; the console table also prints J/n. The paper does not
state its normalisation, so its values (printed beside ours) are a qualitative yardstick:
convex <= SGD. Test error is the mean squared
error of the regression output on the test split.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from .. import ParallelReLU, ParallelReLURegressor, active_set_solve, objective
from ..data import UCI_SETS, load_uci
from .demo import _quiet_lightning
from .recording import CsvRows

#: The paper's Table 1 training objectives (SGD, convex), from ../shared/data/uci/README.md.
PAPER = {
    "acute-inflammation": (0.0029, 0.0013),
    "acute-nephritis": (0.0039, 0.0021),
    "balloons": (0.7901, 0.6695),
    "breast-tissue": (0.5219, 0.3979),
    "fertility": (0.125, 0.1224),
    "pittsburg-bridges-SPAN": (0.1723, 0.1668),
}

COLUMNS = ["dataset", "n", "d", "sgd_objective", "convex_objective", "sgd_test_error",
           "convex_test_error", "sgd_seconds", "convex_seconds", "paper_sgd_objective",
           "paper_convex_objective"]


def _test_error(net, ds) -> float:
    if ds.X_test.shape[0] == 0:
        return float("nan")
    with torch.no_grad():
        return float((net(ds.X_test) - ds.y_test).square().mean())


def fit_sgd(net, X, y, beta, epochs, batch_size, lr=1e-2, seed=0):
    import pytorch_lightning as pl

    loader = DataLoader(TensorDataset(X, y), batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    trainer = pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False,
                         enable_model_summary=False, enable_progress_bar=False,
                         accelerator="cpu", devices=1)
    trainer.fit(ParallelReLURegressor(net, beta, lr=lr), loader)
    return net


def run_dataset(name, data_dir=None, epochs=200, seed=0, beta=0.1, branches=10, hidden=7,
                extra_patterns=50, search=64, solver="auto") -> dict:
    ds = load_uci(name, data_dir)
    X, y = ds.X_train, ds.y_train
    n, d = X.shape
    torch.manual_seed(seed)
    net = ParallelReLU(d, hidden, branches, bias=True)
    start = time.perf_counter()
    fit_sgd(net, X, y, beta, epochs, max(1, n // 8), seed=seed)
    sgd_seconds = time.perf_counter() - start
    convex_net = copy.deepcopy(net)
    start = time.perf_counter()
    active_set_solve(convex_net, X, y, beta, solver=solver, extra_patterns=extra_patterns,
                     search=search, generator=torch.Generator().manual_seed(seed))
    convex_seconds = time.perf_counter() - start
    paper = PAPER.get(name, (float("nan"), float("nan")))
    return {
        "dataset": name, "n": n, "d": d,
        "sgd_objective": objective(net, X, y, beta),
        "convex_objective": objective(convex_net, X, y, beta),
        "sgd_test_error": _test_error(net, ds),
        "convex_test_error": _test_error(convex_net, ds),
        "sgd_seconds": sgd_seconds, "convex_seconds": convex_seconds,
        "paper_sgd_objective": paper[0], "paper_convex_objective": paper[1],
    }


def main(data_dir=None, out="table1.csv", epochs=200, seed=0, extra_patterns=50, search=64,
         solver="auto", datasets=None) -> int:
    _quiet_lightning()
    names = list(datasets or UCI_SETS)
    unknown = [name for name in names if name not in UCI_SETS]
    if unknown:
        raise ValueError(f"unknown data set(s) {', '.join(unknown)}; Table 1 has {', '.join(UCI_SETS)}")
    csv_rows = CsvRows(out, COLUMNS)  # fails now, before any training, when out is unwritable
    rows, failed = [], []
    print("Table 1 (Ergen & Pilanci 2021): (m, K, beta, batch) = (7, 10, 0.1, floor(n/8)); "
          "objective J = 1/2||f(X)-y||^2 + beta*R (sum form, train split); test error = MSE")
    header = (f"{'dataset':<24}{'n':>5}{'d':>4}{'SGD J':>11}{'convex J':>11}{'SGD test':>10}"
              f"{'cvx test':>10}{'SGD s':>8}{'cvx s':>8}  J/n SGD / convex  (paper SGD / convex)")
    print(header)
    for name in names:
        try:
            row = run_dataset(name, data_dir, epochs=epochs, seed=seed, extra_patterns=extra_patterns,
                              search=search, solver=solver)
        except (OSError, ValueError, RuntimeError) as exc:
            print(f"{name:<24}failed: {exc}", flush=True)
            failed.append(name)
            continue
        rows.append(row)
        csv_rows.append(row)
        print(f"{name:<24}{row['n']:>5}{row['d']:>4}{row['sgd_objective']:>11.5f}"
              f"{row['convex_objective']:>11.5f}{row['sgd_test_error']:>10.4f}"
              f"{row['convex_test_error']:>10.4f}{row['sgd_seconds']:>8.1f}{row['convex_seconds']:>8.1f}"
              f"  {row['sgd_objective'] / row['n']:.4f} / {row['convex_objective'] / row['n']:.4f}"
              f"  ({row['paper_sgd_objective']} / {row['paper_convex_objective']})", flush=True)
    wins = sum(r["convex_objective"] <= r["sgd_objective"] for r in rows)
    print(f"convex <= SGD training objective on {wins}/{len(rows)} data sets")
    if failed:
        print(f"failed: {', '.join(failed)}")
    print(f"wrote {csv_rows.close()}")
    return 0 if wins == len(rows) and not failed else 1
