"""osqp warm-started from the network the patterns came from, against its cold solve (issue 3).

The hybrid loop's case: a network trained with Adam (200 steps, K = 10, m = 7, beta = 0.1, bias
column, path norm) on each UCI training split, the program over its own patterns, solved by osqp
at its defaults cold (Q = 0) and warm-started from the network (``warm_start=net``). Errors are
relative to Clarabel at tol 1e-10; seconds are the solve's own (``Solution.seconds``).
``--active-set`` adds ``active_set_solve(net, ..., solver="osqp")`` from the same network (its
seconds and final J: the rounds warm-start every solve).

``--warm-polish-rounds N`` (benchmark only) overrides the osqp run's ``WARM_POLISH_ROUNDS``, the
active-set rounds of the polish at a nonzero start, to compare settings.

Usage:
    python benchmarks/warm_from_network.py [--active-set] [--warm-polish-rounds N]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import solvers as bench  # noqa: E402

from lightning_convex import (ParallelReLU, RestrictedProgram, active_set_solve, objective,  # noqa: E402
                              patterns_of, solve)
from lightning_convex.data import UCI_SETS, load_uci  # noqa: E402
from lightning_convex.solvers.osqp_backend import run as osqp_run  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--active-set", action="store_true")
    parser.add_argument("--warm-polish-rounds", type=int, default=None)
    args = parser.parse_args(argv)
    if args.warm_polish_rounds is not None:
        osqp_run.WARM_POLISH_ROUNDS = args.warm_polish_rounds
    head = "| program | osqp cold | osqp warm from the network |"
    if args.active_set:
        head += " active_set_solve (osqp) |"
    print(f"WARM_POLISH_ROUNDS = {osqp_run.WARM_POLISH_ROUNDS}")
    print(head + "\n" + "|---" * (head.count("|") - 1) + "|")
    for name in UCI_SETS:
        ds = load_uci(name)
        X, y = ds.X_train.double(), ds.y_train.double()
        torch.manual_seed(0)
        net = ParallelReLU(X.shape[1], bench.M, bench.K, depth=3, bias=True).double()
        bench.train(net, X, y, 200)
        prog = RestrictedProgram(X, y, patterns_of(net, X), bench.BETA)
        ref = solve(prog, solver="clarabel", tol=1e-10).objective
        cells = []
        for kwargs in ({}, {"warm_start": net}):
            sol = solve(prog, solver="osqp", progress=False, **kwargs)
            cells.append(f"{sol.seconds:.2f} s / {(sol.objective - ref) / ref:+.1e} ({sol.status.value})")
        if args.active_set:
            moved = copy.deepcopy(net)
            start = time.perf_counter()
            result = active_set_solve(moved, X, y, bench.BETA, solver="osqp", progress=False, warn=False)
            seconds = time.perf_counter() - start
            J = float(objective(moved, X, y, bench.BETA))
            cells.append(f"{seconds:.2f} s, J {J:.8f} ({result.rounds} rounds, {result.stop_reason})")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
