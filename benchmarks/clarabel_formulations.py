"""Clarabel's two formulations of the restricted SOCP (lightning_convex.solvers.clarabel_backend):
"hessian" (dense A^T A, no residual variable) against "residual" (r = A q - y as a variable).

The rule ``choose_formulation`` uses (hessian when N = P m d' <= 4 n) rests on this: the LDL fill
of the hessian form is dense in N, that of the residual form grows with n. Programs: the patterns
of a network (K = 10, m = 7, bias, path norm, beta = 0.1) after 200 full-batch Adam steps on
scikit-learn's diabetes set (n = 354 training rows), on the UCI acute-inflammation and
breast-tissue sets, and on synthetic data with n = 2000, d = 10 (a ReLU teacher plus noise).

Usage:
    python benchmarks/clarabel_formulations.py [--repeats R] [--near-one]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_convex import ParallelReLU, RestrictedProgram, patterns_of, solve  # noqa: E402
from lightning_convex.data import load_diabetes, load_uci  # noqa: E402

BETA, K, M = 0.1, 10, 7


def program(X, y, hidden=M):
    torch.manual_seed(0)
    net = ParallelReLU(X.shape[1], hidden, K, bias=True).double()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(200):
        opt.zero_grad()
        (0.5 * (net(X) - y).square().sum() + BETA * net.regularizer()).backward()
        opt.step()
    patterns = patterns_of(net, X)
    return RestrictedProgram(X, y, patterns.select(~patterns.is_degenerate()).unique(), BETA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--near-one", action="store_true",
                        help="add a synthetic program with N / n = 1.05 (minutes per solve)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sets = [("diabetes", load_diabetes())] + [(name, load_uci(name)) for name in
                                              ("acute-inflammation", "breast-tissue")]
    g = torch.Generator().manual_seed(0)
    X = torch.randn(2000, 10, generator=g, dtype=torch.float64)
    w = torch.randn(10, generator=g, dtype=torch.float64)
    y = torch.relu(X @ w) - 0.5 * torch.relu(-X @ w) + 0.1 * torch.randn(2000, generator=g, dtype=torch.float64)
    sets.append(("synthetic n=2000 d=10", SimpleNamespace(X_train=X, y_train=y)))
    if args.near_one:  # N / n close to 1: the region the rule's threshold sits in
        X = torch.randn(2000, 20, generator=g, dtype=torch.float64)
        w = torch.randn(20, generator=g, dtype=torch.float64)
        y = torch.relu(X @ w) + 0.1 * torch.randn(2000, generator=g, dtype=torch.float64)
        sets.append(("synthetic n=2000 d=20 m=10", SimpleNamespace(X_train=X, y_train=y, hidden=10)))
    print(f"# {platform.processor() or platform.machine()}, torch threads 1, repeats {args.repeats}")
    print("| data | n | N = P m d' | hessian s | residual s | objective difference |")
    print("|---|---|---|---|---|---|")
    for name, ds in sets:
        prog = program(ds.X_train.double(), ds.y_train.double(), getattr(ds, "hidden", M))
        times = {"hessian": [], "residual": []}
        objectives = {}
        for _ in range(args.repeats):
            for form in times:
                start = time.perf_counter()
                sol = solve(prog, solver="clarabel", formulation=form)
                times[form].append(time.perf_counter() - start)
                objectives[form] = sol.objective
        diff = abs(objectives["hessian"] - objectives["residual"])
        print(f"| {name} | {prog.n} | {prog.num_variables} | {statistics.median(times['hessian']):.3g} | "
              f"{statistics.median(times['residual']):.3g} | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
