"""Hybrid convex/SGD training on real data: Adam plus an active-set warm start every 10 epochs.

acute-inflammation (UCI, the training split of conxuntos.dat), K = 10 branches of width m = 7,
beta = 0.1, a bias column, path-norm objective J = 1/2 ||f(X) - y||^2 + beta R (MATH.md
section 1). Every 10 epochs ActiveSetWarmStart jumps the network to the optimum of the convex
program restricted to its own activation patterns, iterated to a fixed point (MATH.md section 8).
At the end the network's own patterns are read again and the restricted program is solved
through CVXPY (a different code path from the callback's Clarabel adapter): a fixed point leaves
nothing to gain.

    python examples/hybrid_acute_inflammation.py --data-dir ../shared/data/uci
"""

import argparse
import logging
import time
import warnings

import torch
from torch.utils.data import DataLoader, TensorDataset

import lightning_convex as lc
from lightning_convex._compat import namespace
from lightning_convex.callbacks import ActiveSetWarmStart
from lightning_convex.data import load_uci
from lightning_convex.regressor import regressor_class


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="folder with the UCI sets (default ../shared/data/uci)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--every", type=int, default=10, help="warm start every this many epochs")
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--style", default="pytorch_lightning", choices=["pytorch_lightning", "lightning.pytorch"])
    args = parser.parse_args()

    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    pl = namespace(args.style)
    pl.seed_everything(args.seed, verbose=False)

    data = load_uci("acute-inflammation", args.data_dir)
    X, y = data.X_train, data.y_train
    n = X.shape[0]
    net = lc.ParallelReLU(data.d, hidden=7, branches=10, bias=True)
    model = regressor_class(args.style)(net, beta=args.beta, lr=args.lr)
    loader = DataLoader(TensorDataset(X, y), batch_size=max(1, n // 8), shuffle=True,
                        generator=torch.Generator().manual_seed(args.seed))
    callback = ActiveSetWarmStart(every_n_epochs=args.every, verbose=False)
    trainer = pl.Trainer(max_epochs=args.epochs, callbacks=[callback], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1)
    print(f"acute-inflammation: n={n}, d={data.d}, K=10, m=7, beta={args.beta}, bias column, "
          f"Adam lr={args.lr}, batch {max(1, n // 8)}, {args.epochs} epochs, warm start every {args.every}")
    start = time.perf_counter()
    trainer.fit(model, loader)
    seconds = time.perf_counter() - start

    print(f"{'epoch':>5} {'J before':>12} {'J after':>12} {'rounds':>6} {'stop':>10} {'active':>6} "
          f"{'solver s':>8}")
    for h in callback.history:
        print(f"{h['epoch']:>5} {h['before']:>12.8f} {h['after']:>12.8f} {h['rounds']:>6} "
              f"{h['stop_reason']:>10} {h['active']:>6} {h['solver_seconds']:>8.2f}")
    monotone = all(h["after"] <= h["before"] for h in callback.history)
    print(f"every warm start monotone (after <= before): {monotone}; fit took {seconds:.1f} s")

    # final check: the restricted optimum over the final network's own patterns, through CVXPY
    J = lc.objective(net, X, y, args.beta)
    patterns = lc.patterns_of(net, X)
    patterns = patterns.select(~patterns.is_degenerate()).unique()
    solution = lc.solve(lc.RestrictedProgram(X, y, patterns, args.beta), solver="cvxpy")
    gap = (J - solution.objective) / J
    print(f"final J = {J:.8f}; restricted optimum over its own {len(patterns)} patterns (CVXPY, "
          f"{solution.status}) = {solution.objective:.8f}; relative gap {gap:.2e}")
    print("fixed point within 1e-4: " + ("yes" if gap <= 1e-4 and solution.is_optimal else "NO"))


if __name__ == "__main__":
    main()
