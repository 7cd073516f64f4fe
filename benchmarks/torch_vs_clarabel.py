"""The torch backend against Clarabel on random small restricted programs (issue 7).

Each program: Gaussian X (n x d) and y, a random ParallelReLU's own patterns plus sampled ones
(Remark 3), a log-uniform beta in [0.01, 30]. For each: status, relative objective difference,
the rebuilt network's difference, the certified gap, nonzero patterns, and both wall times.

    python benchmarks/torch_vs_clarabel.py --count 40 --seed 0
"""

from __future__ import annotations

import argparse
import json
import random
import time

import torch

import lightning_convex as lc


def make_program(seed, n, d, K, m, depth, bias, beta, extra):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(n, generator=g, dtype=torch.float64)
    torch.manual_seed(seed)
    net = lc.ParallelReLU(d, m, K, depth=depth, bias=bias).double()
    pats = lc.patterns_of(net, X)
    if extra:
        pats = pats.union(lc.sample_patterns(X, extra, m, generator=g, depth=depth, bias=bias))
    return lc.RestrictedProgram(X, y, pats, beta), X, y


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--count", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--method", default="auto", choices=["auto", "ipm", "alm"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    rows = []
    for i in range(args.count):
        depth = rng.choice([2, 3])
        cfg = dict(seed=1000 + i, n=rng.choice([20, 40, 60, 90]), d=rng.choice([2, 3, 5]),
                   K=rng.choice([3, 5, 8]), m=1 if depth == 2 else rng.choice([2, 3, 4]), depth=depth,
                   bias=rng.random() < 0.6, beta=10 ** rng.uniform(-2, 1.5), extra=rng.choice([0, 4, 8]))
        prog, X, y = make_program(**cfg)
        t0 = time.perf_counter()
        ref = lc.solve(prog, solver="clarabel")
        t_ref = time.perf_counter() - t0
        t0 = time.perf_counter()
        sol = lc.solve(prog, solver="torch", method=args.method)
        t_sol = time.perf_counter() - t0
        scale = max(ref.objective, 1e-300)
        row = dict(cfg, P=prog.P, status=str(sol.status), clarabel_status=str(ref.status),
                   rel=(sol.objective - ref.objective) / scale,
                   rel_network=(lc.objective(lc.to_network(sol), X, y, prog.beta) - ref.objective) / scale,
                   gap=sol.info.get("gap"), iterations=sol.iterations, seconds=t_sol, clarabel_seconds=t_ref,
                   active=int(sol.active_patterns().sum()), clarabel_active=int(ref.active_patterns().sum()))
        rows.append(row)
        print(f"{i:3d} n={cfg['n']:3d} d={cfg['d']} P={prog.P:2d} m={cfg['m']} depth={depth} "
              f"{row['status']:>10s} rel {row['rel']:+.1e} net {row['rel_network']:+.1e} "
              f"gap {row['gap']:.1e} it {row['iterations']:3d} torch {t_sol:.2f}s clarabel {t_ref:.2f}s "
              f"active {row['active']}/{prog.P} (clarabel {row['clarabel_active']})", flush=True)
    statuses = {}
    for row in rows:
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    worst = max(max(abs(r["rel"]), abs(r["rel_network"])) for r in rows)
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    print(f"statuses {statuses}; worst |relative difference| {worst:.1e}; median seconds torch "
          f"{med([r['seconds'] for r in rows]):.2f} clarabel {med([r['clarabel_seconds'] for r in rows]):.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return rows


if __name__ == "__main__":
    main()
