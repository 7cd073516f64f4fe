"""Train a ParallelReLU briefly with Adam, then solve the convex program over its own activation
patterns and write the optimum back into the network (no Lightning needed).

    python examples/restricted_solve.py --data-dir ../shared/data/uci --name acute-inflammation
"""

import argparse

import torch

import lightning_convex as lc
from lightning_convex.data import load_uci


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--name", default="acute-inflammation")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--beta", type=float, default=0.1)
    args = parser.parse_args()

    torch.manual_seed(0)
    data = load_uci(args.name, args.data_dir, split="all")
    X, y = data.X_train, data.y_train
    net = lc.ParallelReLU(data.d, hidden=7, branches=10, bias=True)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(args.steps):
        optimizer.zero_grad()
        (0.5 * (net(X) - y).square().sum() + args.beta * net.regularizer()).backward()
        optimizer.step()

    before = lc.objective(net, X, y, args.beta)
    program = lc.RestrictedProgram(X, y, lc.patterns_of(net, X), args.beta)
    solution = lc.solve(program, solver="clarabel")
    print(f"Adam ({args.steps} steps):           J = {before:.6f}")
    print(f"restricted optimum ({program.P} patterns): J = {solution.objective:.6f}  [{solution.status}]")
    if solution.is_optimal and solution.objective <= before:
        net.load_solution_(solution)
        print(f"network after write-back:      J = {lc.objective(net, X, y, args.beta):.6f}")


if __name__ == "__main__":
    main()
