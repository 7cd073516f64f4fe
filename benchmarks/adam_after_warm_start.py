"""What Adam does in the epochs after a warm start, for three ways of treating its state.

Fashion-MNIST, class-stratified subsample of n rows (seed S), one-vs-rest class C, standardised,
bias, beta = 1, K = 10, m = 10, batch 256, Adam lr 1e-3, one torch thread (the setting of
BENCHMARKS.md "Hybrid training at the callback's defaults, n = 1500"). After ``--epochs-before``
epochs of Adam, ``active_set_solve`` moves a copy of the network for ``--warm-seconds``; Adam
then continues from the moved network for ``--epochs-after`` epochs (the same batches for each
policy), with its state:

* ``reset``: cleared (what ``ActiveSetWarmStart(reset_optimizer=True)`` does, the default);
* ``keep``: kept as it was before the warm start (``reset_optimizer=False``);
* ``zero_m``: the first moments set to zero, second moments and step counts kept (not an
  option of the callback; measured to see whether it avoids the jump of the first epochs).

Prints J (sum form, float64, all rows) after every ``--every``-th epoch after the warm start.

    python benchmarks/adam_after_warm_start.py --draw 0:0 --draw 3:1 --draw 7:2
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from adam_epochs import adam_epoch  # noqa: E402

import lightning_convex as lc  # noqa: E402
from lightning_convex.fashion_mnist import load_fashion_mnist  # noqa: E402

POLICIES = ("reset", "keep", "zero_m")


def objective(net, X, y):
    return float(lc.objective(copy.deepcopy(net).double(), X.double(), y.double(), 1.0))


def draw(data, n, cls, seed, args):
    ds = data.subsample(n, 100, seed=seed)
    X, y = ds.X_train.float(), ds.targets(cls).float()
    torch.manual_seed(seed)
    net = lc.ParallelReLU(784, 10, 10, bias=True)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(args.epochs_before):
        adam_epoch(net, optimizer, X, y, generator)
    moved = copy.deepcopy(net)
    result = lc.active_set_solve(moved, X.double(), y.double(), 1.0, time_limit=args.warm_seconds,
                                 progress=False, warn=False)
    print(f"draw {cls}:{seed}: J {objective(net, X, y):.4f} after {args.epochs_before} epochs, "
          f"{objective(moved, X, y):.4f} after the warm start ({result.stop_reason})", flush=True)
    for policy in POLICIES:
        follow = copy.deepcopy(moved)
        opt = torch.optim.Adam(follow.parameters(), lr=1e-3)
        opt.load_state_dict(copy.deepcopy(optimizer.state_dict()))
        if policy == "reset":
            opt.state.clear()
        elif policy == "zero_m":
            for state in opt.state.values():
                state["exp_avg"].zero_()
        batches = torch.Generator().manual_seed(seed + 1)
        trace = []
        for e in range(1, args.epochs_after + 1):
            adam_epoch(follow, opt, X, y, batches)
            if e == 1 or e % args.every == 0:
                trace.append(f"{e}: {objective(follow, X, y):.3f}")
        print(f"  {policy:7s} " + ", ".join(trace), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draw", action="append", help="CLASS:SEED (repeatable; default 0:0)")
    parser.add_argument("--n", type=int, default=1500)
    parser.add_argument("--epochs-before", type=int, default=2)
    parser.add_argument("--warm-seconds", type=float, default=20.0)
    parser.add_argument("--epochs-after", type=int, default=30)
    parser.add_argument("--every", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data = load_fashion_mnist()
    for spec in args.draw or ["0:0"]:
        cls, seed = (int(part) for part in spec.split(":"))
        draw(data, args.n, cls, seed, args)


if __name__ == "__main__":
    main()
