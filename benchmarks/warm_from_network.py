"""osqp warm-started from the network the patterns came from, against its cold solve (issue 3).

The hybrid loop's case: a network trained with Adam (200 steps, K = 10, m = 7, beta = 0.1, bias
column, path norm) on each UCI training split, the program over its own patterns, solved cold and
warm-started from the network with ``warm_irls_rounds`` reweighted rounds. Errors are relative to
Clarabel at tol 1e-10.

Usage:
    python benchmarks/warm_from_network.py [WARM_IRLS_ROUNDS]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import solvers as bench  # noqa: E402

from lightning_convex import ParallelReLU, RestrictedProgram, patterns_of, solve  # noqa: E402
from lightning_convex.data import UCI_SETS, load_uci  # noqa: E402


def main(rounds: int):
    print(f"| program | osqp cold | osqp warm from the network ({rounds} rounds) |\n|---|---|---|")
    for name in UCI_SETS:
        ds = load_uci(name)
        X, y = ds.X_train.double(), ds.y_train.double()
        torch.manual_seed(0)
        net = ParallelReLU(X.shape[1], bench.M, bench.K, depth=3, bias=True).double()
        bench.train(net, X, y, 200)
        prog = RestrictedProgram(X, y, patterns_of(net, X), bench.BETA)
        ref = solve(prog, solver="clarabel", tol=1e-10).objective
        cells = []
        for kwargs in ({}, {"warm_start": net, "warm_irls_rounds": rounds}):
            t = time.perf_counter()
            sol = solve(prog, solver="osqp", **kwargs)
            sec = time.perf_counter() - t
            cells.append(f"{sec:.2f} s / {(sol.objective - ref) / ref:+.1e} ({sol.status.value})")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4)
