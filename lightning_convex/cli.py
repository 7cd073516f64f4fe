"""The ``lightning-convex`` command line.

    lightning-convex demo                                   # SGD vs hybrid on diabetes, certified
    lightning-convex reproduce table1 --data-dir DIR --out table1.csv
    lightning-convex reproduce figure4 --out figure4/
    lightning-convex reproduce figure5 --out figure5/               # Fashion-MNIST, CPU-sized defaults
"""

from __future__ import annotations

import argparse
import math
import sys

from .data import UCI_SETS
from .experiments import demo, figure4, figure5, table1
from .solvers import available_solvers


def _number(kind, minimum, name):
    """An argparse type: ``kind`` (int or float) that is finite and >= ``minimum``."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {name}") from None
        if not math.isfinite(value) or value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} is not {name}")
        return value
    parse.__name__ = name
    return parse


POSITIVE_INT = _number(int, 1, "a positive integer")
COUNT = _number(int, 0, "a non-negative integer")
SEED = _number(int, 0, "a non-negative integer seed")


def _positive_float(text: str) -> float:
    value = _number(float, 0.0, "a positive number")(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


NON_NEGATIVE = _number(float, 0.0, "a non-negative number")


def _demo(args) -> int:
    return demo.main(out=args.out, epochs=args.epochs, certify_every=args.certify_every,
                     warm_every=args.warm_every, beta=args.beta, branches=args.branches,
                     hidden=args.hidden, seed=args.seed, solver=args.solver, max_rounds=args.max_rounds,
                     progress=not args.no_progress)


def _table1(args) -> int:
    return table1.main(data_dir=args.data_dir, out=args.out, epochs=args.epochs, seed=args.seed,
                       extra_patterns=args.extra_patterns, search=args.search, solver=args.solver,
                       datasets=args.datasets)


def _figure4(args) -> int:
    return figure4.main(out=args.out, Ks=tuple(args.K), seeds=args.seeds, steps=args.steps,
                        hybrid_every=args.hybrid_every, max_patterns=args.max_patterns,
                        sampled=args.sampled)


def _figure5(args) -> int:
    return figure5.main(out=args.out, data_dir=args.data_dir, methods=args.methods,
                        progress=not args.no_progress, n=args.n, n_test=args.n_test, K=args.K, m=args.m,
                        patterns=args.patterns, beta=args.beta, epochs=args.epochs,
                        batch_size=args.batch_size, lr=args.lr, convex_lr=args.convex_lr, rho=args.rho,
                        warm_every=args.warm_every, warm_time=args.warm_time,
                        warm_rounds=args.warm_rounds, seed=args.seed, device=args.device,
                        threads=args.threads)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lightning-convex",
        description="Convex certificates and hybrid convex/SGD training for parallel ReLU networks.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="SGD vs hybrid on scikit-learn's diabetes set, with certificates")
    demo.add_argument("--out", default="lightning-convex-demo", help="folder for demo.csv and demo.png")
    demo.add_argument("--epochs", type=POSITIVE_INT, default=40)
    demo.add_argument("--certify-every", type=COUNT, default=10, help="0: never")
    demo.add_argument("--warm-every", type=COUNT, default=10, help="0: never")
    demo.add_argument("--branches", type=POSITIVE_INT, default=10)
    demo.add_argument("--hidden", type=POSITIVE_INT, default=3)
    demo.add_argument("--max-rounds", type=POSITIVE_INT, default=5, help="active-set rounds per warm start")
    demo.add_argument("--beta", type=_positive_float, default=0.1)
    demo.add_argument("--seed", type=SEED, default=0)
    demo.add_argument("--solver", default="auto", choices=available_solvers())
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    demo.set_defaults(func=_demo)

    reproduce = sub.add_parser("reproduce", help="reproduce the paper's Table 1, Figure 4 or Figure 5")
    which = reproduce.add_subparsers(dest="experiment", required=True)
    t1 = which.add_parser("table1", help="the six UCI sets of Table 1")
    t1.add_argument("--data-dir", default=None, help="folder with the UCI sets (default ../shared/data/uci)")
    t1.add_argument("--out", default="table1.csv")
    t1.add_argument("--epochs", type=POSITIVE_INT, default=200)
    t1.add_argument("--seed", type=SEED, default=0)
    t1.add_argument("--extra-patterns", type=COUNT, default=50)
    t1.add_argument("--search", type=COUNT, default=64)
    t1.add_argument("--solver", default="auto", choices=available_solvers())
    t1.add_argument("--datasets", nargs="*", default=None, choices=UCI_SETS)
    t1.set_defaults(func=_table1)
    f4 = which.add_parser("figure4", help="SGD stalling for small K vs the convex optimum")
    f4.add_argument("--out", default="figure4")
    f4.add_argument("--K", type=POSITIVE_INT, nargs="+", default=[1, 2, 5, 10])
    f4.add_argument("--seeds", type=POSITIVE_INT, default=5)
    f4.add_argument("--steps", type=POSITIVE_INT, default=3000)
    f4.add_argument("--hybrid-every", type=POSITIVE_INT, default=500)
    f4.add_argument("--max-patterns", type=POSITIVE_INT, default=200_000,
                    help="largest exhaustive pattern set; above it, sampled patterns (scope stated)")
    f4.add_argument("--sampled", type=POSITIVE_INT, default=5000, help="sampled patterns in the fallback")
    f4.set_defaults(func=_figure4)
    f5 = which.add_parser("figure5", help="Fashion-MNIST accuracy vs wall time: network, convex program, hybrid")
    d5 = figure5.Settings()
    f5.add_argument("--out", default="figure5", help="folder for curves.csv and figure5.png")
    f5.add_argument("--data-dir", default=None,
                    help="folder with the four IDX files (default: the dataset-fashion-mnist package's)")
    f5.add_argument("--methods", nargs="+", default=list(figure5.METHODS), choices=figure5.METHODS)
    f5.add_argument("--n", type=POSITIVE_INT, default=d5.n, help="training rows (class-stratified subsample)")
    f5.add_argument("--n-test", type=POSITIVE_INT, default=d5.n_test, help="test rows (stratified)")
    f5.add_argument("--K", type=POSITIVE_INT, default=d5.K, help="branches per class network")
    f5.add_argument("--m", type=POSITIVE_INT, default=d5.m, help="first-layer width of each branch")
    f5.add_argument("--patterns", type=POSITIVE_INT, default=None,
                    help="sampled patterns per class for the convex program (default: K)")
    f5.add_argument("--beta", type=_positive_float, default=d5.beta, help="regularization weight (sum form)")
    f5.add_argument("--epochs", type=POSITIVE_INT, default=d5.epochs)
    f5.add_argument("--batch-size", type=POSITIVE_INT, default=d5.batch_size)
    f5.add_argument("--lr", type=_positive_float, default=d5.lr, help="Adam's step for the networks")
    f5.add_argument("--convex-lr", type=_positive_float, default=d5.convex_lr,
                    help="Adam's step for the convex program")
    f5.add_argument("--rho", type=NON_NEGATIVE, default=d5.rho, help="hinge penalty on violated cone rows")
    f5.add_argument("--warm-every", type=POSITIVE_INT, default=d5.warm_every, help="epochs between warm starts")
    f5.add_argument("--warm-time", type=_positive_float, default=d5.warm_time,
                    help="seconds per warm-start round: a warm start gets warm-rounds x warm-time seconds")
    f5.add_argument("--warm-rounds", type=POSITIVE_INT, default=d5.warm_rounds,
                    help="active-set rounds per warm start")
    f5.add_argument("--seed", type=SEED, default=d5.seed)
    f5.add_argument("--device", default=d5.device, choices=["cpu", "cuda", "auto"])
    f5.add_argument("--threads", type=POSITIVE_INT, default=d5.threads, help="torch CPU threads")
    f5.add_argument("--no-progress", action="store_true", help="no line per class and epoch")
    f5.set_defaults(func=_figure5)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
