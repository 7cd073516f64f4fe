"""The ``lightning-convex`` command line.

    lightning-convex demo                                   # SGD vs hybrid on diabetes, certified
    lightning-convex reproduce table1 --data-dir DIR --out table1.csv
    lightning-convex reproduce figure4 --out figure4/
"""

from __future__ import annotations

import argparse
import sys


def _demo(args) -> int:
    from .experiments import demo

    return demo.main(out=args.out, epochs=args.epochs, certify_every=args.certify_every,
                     warm_every=args.warm_every, beta=args.beta, branches=args.branches,
                     hidden=args.hidden, seed=args.seed, solver=args.solver, max_rounds=args.max_rounds,
                     progress=not args.no_progress)


def _table1(args) -> int:
    from .experiments import table1

    return table1.main(data_dir=args.data_dir, out=args.out, epochs=args.epochs, seed=args.seed,
                       extra_patterns=args.extra_patterns, search=args.search, solver=args.solver,
                       datasets=args.datasets)


def _figure4(args) -> int:
    from .experiments import figure4

    return figure4.main(out=args.out, Ks=tuple(args.K), seeds=args.seeds, steps=args.steps,
                        hybrid_every=args.hybrid_every, max_patterns=args.max_patterns,
                        sampled=args.sampled)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lightning-convex",
        description="Convex certificates and hybrid convex/SGD training for parallel ReLU networks.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="SGD vs hybrid on scikit-learn's diabetes set, with certificates")
    demo.add_argument("--out", default="lightning-convex-demo", help="folder for demo.csv and demo.png")
    demo.add_argument("--epochs", type=int, default=40)
    demo.add_argument("--certify-every", type=int, default=10)
    demo.add_argument("--warm-every", type=int, default=10)
    demo.add_argument("--branches", type=int, default=10)
    demo.add_argument("--hidden", type=int, default=3)
    demo.add_argument("--max-rounds", type=int, default=5, help="active-set rounds per warm start")
    demo.add_argument("--beta", type=float, default=0.1)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--solver", default="auto")
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    demo.set_defaults(func=_demo)

    reproduce = sub.add_parser("reproduce", help="reproduce the paper's Table 1 or Figure 4")
    which = reproduce.add_subparsers(dest="experiment", required=True)
    t1 = which.add_parser("table1", help="the six UCI sets of Table 1")
    t1.add_argument("--data-dir", default=None, help="folder with the UCI sets (default ../shared/data/uci)")
    t1.add_argument("--out", default="table1.csv")
    t1.add_argument("--epochs", type=int, default=200)
    t1.add_argument("--seed", type=int, default=0)
    t1.add_argument("--extra-patterns", type=int, default=50)
    t1.add_argument("--search", type=int, default=64)
    t1.add_argument("--solver", default="auto")
    t1.add_argument("--datasets", nargs="*", default=None)
    t1.set_defaults(func=_table1)
    f4 = which.add_parser("figure4", help="SGD stalling for small K vs the convex optimum")
    f4.add_argument("--out", default="figure4")
    f4.add_argument("--K", type=int, nargs="+", default=[1, 2, 5, 10])
    f4.add_argument("--seeds", type=int, default=5)
    f4.add_argument("--steps", type=int, default=3000)
    f4.add_argument("--hybrid-every", type=int, default=500)
    f4.add_argument("--max-patterns", type=int, default=200_000,
                    help="largest exhaustive pattern set; above it, sampled patterns (scope stated)")
    f4.add_argument("--sampled", type=int, default=5000, help="sampled patterns in the fallback")
    f4.set_defaults(func=_figure4)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
