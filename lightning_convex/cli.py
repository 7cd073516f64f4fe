"""The ``lightning-convex`` command line."""

from __future__ import annotations

import argparse
import sys


def _demo(args) -> int:
    import torch

    import lightning_convex as lc
    from lightning_convex.data import load_diabetes

    torch.manual_seed(args.seed)
    data = load_diabetes()
    X, y = data.X_train, data.y_train
    beta = args.beta
    net = lc.ParallelReLU(X.shape[1], args.hidden, args.branches, bias=True)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for epoch in range(args.epochs):
        opt.zero_grad()
        loss = 0.5 * (net(X) - y).square().sum() + beta * net.regularizer()
        loss.backward()
        opt.step()
    before = lc.objective(net, X, y, beta)
    program = lc.RestrictedProgram(X, y, lc.patterns_of(net, X), beta)
    solution = lc.solve(program, solver="clarabel")
    print(f"diabetes n={X.shape[0]} d={X.shape[1]} K={args.branches} m={args.hidden} beta={beta}")
    print(f"Adam, {args.epochs} full-batch steps: J = {before:.6f}")
    print(f"restricted convex optimum over its own {program.P} patterns: J = {solution.objective:.6f} "
          f"({solution.status}, {solution.seconds:.2f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lightning-convex", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train on the embedded diabetes set and certify")
    demo.add_argument("--epochs", type=int, default=200)
    demo.add_argument("--branches", type=int, default=10)
    demo.add_argument("--hidden", type=int, default=7)
    demo.add_argument("--beta", type=float, default=0.1)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
