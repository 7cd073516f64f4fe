"""Issue 16's done-when, swept: every backend exact on programs nobody trained.

Programs (beta = 0.1, bias column):
* three-layer: the K = 10, m = 7 patterns of a RANDOMLY initialised ParallelReLU (no training)
  on each UCI set of ../shared/data/uci (training split) and on synthetic data;
* two-layer: g Gaussian gates u ~ N(0, I) on [X, 1], each D = 1[X u >= 0] with both output signs
  (2 g patterns, 10..200).

Each program is solved by an independent CVXPY + Clarabel model (tests/hybrid_reference.py, no
code from lightning_convex; tolerance 1e-10) and by each backend named. A backend is exact on a
program when its status is optimal and (F - F*) / F* <= 1e-6. Per program the script prints
status, relative error and the time ratio to the reference (reference seconds include CVXPY's
compilation, as a user would pay it); then per backend the programs that are not exact and the
median time ratio.

Usage:
    python benchmarks/exact_sweep.py [--seeds 11 12] [--gates 5 25 50 75 100]
                                     [--backends osqp torch] [--limit SECONDS] [--quick]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import hybrid_reference as reference  # noqa: E402
from lightning_convex import ParallelReLU, PatternSet, RestrictedProgram, patterns_of, solve  # noqa: E402
from lightning_convex.data import UCI_SETS, load_uci  # noqa: E402

BETA, K, M = 0.1, 10, 7
EXACT = 1e-6
#: the solver options of each backend column (defaults, except the torch method)
BACKENDS = {"osqp": ("osqp", {}), "torch": ("torch", {"method": "ipm"}), "clarabel": ("clarabel", {})}


def synthetic(n: int, d: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(d, generator=g, dtype=torch.float64)
    y = torch.relu(X @ w) - 0.5 * torch.relu(-X @ w) + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
    return X, y


def random_network_program(X, y, seed: int) -> RestrictedProgram:
    """The patterns of an untrained three-layer network drawn with ``seed``."""
    torch.manual_seed(seed)
    net = ParallelReLU(X.shape[1], M, K, depth=3, bias=True).double()
    return RestrictedProgram(X, y, patterns_of(net, X), BETA)


def sampled_gates_program(X, y, gates: int, seed: int) -> RestrictedProgram:
    """``gates`` Gaussian gates on [X, 1], each with both output signs (2 gates patterns)."""
    g = torch.Generator().manual_seed(seed)
    Xb = torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype)], 1)
    U = torch.randn(Xb.shape[1], gates, generator=g, dtype=X.dtype)
    D = (Xb @ U >= 0).T
    sig = torch.cat([torch.ones(gates, dtype=torch.int8), -torch.ones(gates, dtype=torch.int8)])
    patterns = PatternSet(torch.cat([D, D])[:, :, None], None, sig[:, None].clone(), sig, True)
    return RestrictedProgram(X, y, patterns, BETA)


def programs(seeds, gate_counts, quick: bool):
    """(name, program, X, y) for every program of the sweep."""
    data = [(name, load_uci(name)) for name in UCI_SETS]
    data = [(name, ds.X_train.double(), ds.y_train.double()) for name, ds in data]
    synth = [(150, 6), (300, 8)] if quick else [(150, 6), (300, 8), (500, 10)]
    for seed in seeds:
        sets = data + [(f"synthetic n={n} d={d}", *synthetic(n, d, seed)) for n, d in synth]
        for name, X, y in sets:
            yield f"3L {name} seed={seed}", random_network_program(X, y, seed), X, y
        for i, gates in enumerate(gate_counts):
            name, X, y = data[(seed + i) % len(data)]
            yield (f"2L {name} gates={gates} seed={seed}", sampled_gates_program(X, y, gates, 1000 * seed + gates),
                   X, y)


def reference_solve(prog: RestrictedProgram, X, y):
    t = time.perf_counter()
    value, _ = reference.restricted_optimum(X, y, prog.beta, *reference.pattern_arrays(prog.patterns), True)
    return value, time.perf_counter() - t


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 12])
    parser.add_argument("--gates", type=int, nargs="+", default=[5, 25, 50, 75, 100])
    parser.add_argument("--backends", nargs="+", default=["osqp", "torch"], choices=sorted(BACKENDS))
    parser.add_argument("--limit", type=float, default=300.0, help="time limit per solve (s)")
    parser.add_argument("--quick", action="store_true", help="smaller synthetic programs")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"# {platform.platform()}, python {platform.python_version()}, torch {torch.__version__}, "
          f"1 torch thread; exact = optimal and (F - F*) / F* <= {EXACT:g}")
    ratios = {b: [] for b in args.backends}
    failures = {b: [] for b in args.backends}
    head = f"{'program':46s} {'P':>4s} {'n':>4s} {'ref s':>7s}"
    print(head + "".join(f" | {b:>8s} status {'rel err':>9s} {'ratio':>6s}" for b in args.backends))
    for name, prog, X, y in programs(args.seeds, args.gates, args.quick):
        opt, t_ref = reference_solve(prog, X, y)
        line = f"{name:46s} {prog.P:4d} {prog.n:4d} {t_ref:7.2f}"
        for b in args.backends:
            solver, options = BACKENDS[b]
            t = time.perf_counter()
            sol = solve(prog, solver=solver, time_limit=args.limit, **options)
            seconds = time.perf_counter() - t
            err = (sol.objective - opt) / abs(opt)
            exact = sol.status.value == "optimal" and err <= EXACT
            ratios[b].append(seconds / t_ref)
            if not exact:
                failures[b].append(f"{name}: {sol.status.value} {err:+.1e}")
            line += f" | {sol.status.value[:15]:>15s} {err:+9.1e} {seconds / t_ref:6.1f}"
        print(line, flush=True)
    for b in args.backends:
        print(f"# {b}: {len(ratios[b]) - len(failures[b])} of {len(ratios[b])} exact; median time ratio to "
              f"CVXPY+Clarabel {statistics.median(ratios[b]):.2f}")
        for failure in failures[b]:
            print(f"#   not exact: {failure}")


if __name__ == "__main__":
    main()
