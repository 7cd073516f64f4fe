"""Certificate quality on SGD-trained networks (issue 14): q = (J - LB) / (J - OPT(S)) and cost.

For each data set, seed and training length, a ParallelReLU (K branches of width m, bias, path
norm, float64) is trained by full-batch Adam (lr ``--lr``) on J = 1/2 ||f - y||^2 + beta R, then:

* ``certify(net, X, y, beta)`` at its defaults, timed: its lower bound LB on OPT(S), S the
  network's own active set;
* the exact solve of the same restricted program by the library's Clarabel backend,
  ``solve(RestrictedProgram(X, y, patterns_of(net, X), beta), solver="clarabel")``, timed (the
  cost reference: certify should cost at most 1.5x this + 0.2 s);
* OPT(S) from an independent CVXPY + Clarabel model of MATH.md section 3 over the network's own
  patterns (tests/hybrid_reference.py, which imports nothing from lightning_convex).

Per network: q = (J - LB) / (J - OPT(S)) (1 is perfect), LB / OPT(S), valid = LB <= OPT(S) +
1e-7 (1 + |OPT(S)|) (the reference's tolerance), and the two times. One CSV row per network
(``--csv``), then a table by data set and training length (medians, worst q).

    python benchmarks/certificate_quality.py --csv quality.csv
    python benchmarks/certificate_quality.py --sets fertility --steps 200 --seeds 1   # quick

Data: the UCI sets from ``--data-dir`` (all rows), scikit-learn's diabetes (all 442 rows,
standardised).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch

import lightning_convex as lc
from lightning_convex.data import load_diabetes, load_uci

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import hybrid_reference as reference  # noqa: E402  (the tests' independent CVXPY model)

SETS = ("fertility", "pittsburg-bridges-SPAN", "breast-tissue", "diabetes")
FIELDS = ["set", "n", "steps", "seed", "J", "LB", "OPT", "q", "LB_over_OPT", "valid", "method", "v",
          "certify_seconds", "exact_seconds", "cost_ok"]


def load(name, data_dir):
    if name == "diabetes":
        ds = load_diabetes(test_fraction=0.0)
    else:
        ds = load_uci(name, data_dir, split="all")
    return ds.X_train.double(), ds.y_train.double()


def train(X, y, K, m, beta, steps, lr, seed):
    torch.manual_seed(seed)
    net = lc.ParallelReLU(X.shape[1], m, K, bias=True).double()
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        (0.5 * (net(X) - y).square().sum() + beta * net.regularizer()).backward()
        optimizer.step()
    return net


def measure(name, X, y, steps, seed, args):
    net = train(X, y, args.K, args.m, args.beta, steps, args.lr, seed)
    start = time.perf_counter()
    cert = lc.certify(net, X, y, args.beta)
    certify_seconds = time.perf_counter() - start
    start = time.perf_counter()
    exact = lc.solve(lc.RestrictedProgram(X, y, lc.patterns_of(net, X), args.beta), solver="clarabel")
    exact_seconds = time.perf_counter() - start
    D1, D2, s, sig = reference.read_patterns(net, X)
    opt = reference.restricted_optimum(X, y, args.beta, D1, D2, s, sig, True)[0]
    J, LB = cert.primal, cert.lower_bound
    q = (J - LB) / (J - opt) if J > opt else math.inf
    return {"set": name, "n": X.shape[0], "steps": steps, "seed": seed, "J": J, "LB": LB, "OPT": opt, "q": q,
            "LB_over_OPT": LB / opt, "valid": LB <= opt + 1e-7 * (1 + abs(opt)), "method": cert.method,
            "v": cert.info.get("v"), "certify_seconds": certify_seconds, "exact_seconds": exact_seconds,
            "cost_ok": certify_seconds <= 1.5 * exact_seconds + 0.2}


def table(rows):
    lines = ["| data | steps | n | networks | invalid | median q | worst q | median LB/OPT(S) | median certify s | median exact s | cost ok |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["set"], r["steps"]) for r in rows}, key=lambda k: (SETS.index(k[0]) if k[0] in SETS else 99, k[1]))
    for name, steps in keys:
        group = [r for r in rows if r["set"] == name and r["steps"] == steps]
        qs = [r["q"] for r in group]
        lines.append(
            f"| {name} | {steps} | {group[0]['n']} | {len(group)} | {sum(not r['valid'] for r in group)} | "
            f"{statistics.median(qs):.6g} | {max(qs):.6g} | {statistics.median(r['LB_over_OPT'] for r in group):.6g} | "
            f"{statistics.median(r['certify_seconds'] for r in group):.3g} | "
            f"{statistics.median(r['exact_seconds'] for r in group):.3g} | "
            f"{sum(r['cost_ok'] for r in group)}/{len(group)} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "uci"))
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--steps", nargs="+", type=int, default=[200, 1000, 3000])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--K", type=int, default=10)
    parser.add_argument("--m", type=int, default=7)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--csv", default=None)
    args = parser.parse_args(argv)
    print(f"threads {torch.get_num_threads()}, load average {os.getloadavg()}", flush=True)
    rows = []
    out = None
    if args.csv:
        out = open(args.csv, "w", newline="")
        writer = csv.DictWriter(out, FIELDS)
        writer.writeheader()
    for name in args.sets:
        X, y = load(name, args.data_dir)
        for steps in args.steps:
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                row = measure(name, X, y, steps, seed, args)
                rows.append(row)
                print(" ".join(f"{k}={row[k]:.6g}" if isinstance(row[k], float) else f"{k}={row[k]}"
                               for k in FIELDS), flush=True)
                if out:
                    writer.writerow(row)
                    out.flush()
    if out:
        out.close()
    print(f"load average {os.getloadavg()}")
    print(table(rows))
    qs = [r["q"] for r in rows]
    print(f"all: {len(rows)} networks, {sum(not r['valid'] for r in rows)} invalid, median q "
          f"{statistics.median(qs):.6g}, worst q {max(qs):.6g}, cost ok {sum(r['cost_ok'] for r in rows)}/{len(rows)}")


if __name__ == "__main__":
    main()
