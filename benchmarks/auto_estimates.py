"""What ``solver="auto"`` estimates against what Clarabel and the engine measure (BENCHMARKS.md,
"What auto picks"; the constants of ``lightning_convex/solvers/estimates.py``).

Each program is solved in a child process (so its peak memory is its own): Clarabel
(``solve(program, solver="clarabel", time_limit=--seconds)``) and the engine
(``solve(program, solver="engine", time_limit=--seconds)``, warm-started from the
network), and the row prints the estimate beside the measurement: seconds, and the child's
peak resident memory during the solve above its resident memory before it (Linux: the peak is
reset through ``/proc/self/clear_refs`` before the solve and read from ``VmHWM`` after). A child killed by ``--limit`` seconds (plus
building time) or by ``--memory`` GB of address space is reported as such.

Programs: the network's own patterns (K = 10 branches, bias, depth 3) after Adam (the
constructions of ``clarabel_formulations.py`` for UCI / synthetic rows, m = 7, beta = 0.1, and
of ``engine_methods.py`` for Fashion-MNIST, m = 10, beta = 1, three epochs).

    python benchmarks/auto_estimates.py                  # the ladder below
    python benchmarks/auto_estimates.py --only fashion-40 --only fashion-1000
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

LADDER = ["acute-inflammation", "breast-tissue", "diabetes", "synthetic-500-10", "synthetic-500-30",
          "synthetic-2000-10", "fashion-20", "fashion-40", "fashion-80", "fashion-160", "fashion-1000",
          "fashion-3000", "fashion-10000"]


def build(name):
    """(program, network) for a ladder name."""
    import torch

    if name.startswith("fashion-"):
        from engine_methods import fashion_program

        program, net, _ = fashion_program(int(name.split("-")[1]))
        return program, net
    from clarabel_formulations import program as uci_program

    from lightning_convex.data import load_diabetes, load_uci

    if name.startswith("synthetic-"):
        _, n, d = name.split("-")
        g = torch.Generator().manual_seed(0)
        X = torch.randn(int(n), int(d), generator=g, dtype=torch.float64)
        w = torch.randn(int(d), generator=g, dtype=torch.float64)
        y = torch.relu(X @ w) - 0.5 * torch.relu(-X @ w) + 0.1 * torch.randn(int(n), generator=g, dtype=torch.float64)
    else:
        ds = load_diabetes() if name == "diabetes" else load_uci(name)
        X, y = ds.X_train.double(), ds.y_train.double()
    return uci_program(X, y), None


def _status_bytes(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


def child(name, solver, seconds):
    """Runs in the child process: one solve, one JSON line on stdout."""
    import torch

    import lightning_convex as lc
    from lightning_convex.solvers import estimates

    torch.set_num_threads(1 if solver == "clarabel" else torch.get_num_threads())
    program, net = build(name)
    est = estimates.estimate(program)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM to the current resident size
    before = _status_bytes("VmRSS")
    start = time.perf_counter()
    options = {"time_limit": seconds}
    if solver == "engine" and net is not None:
        options["warm_start"] = net
    sol = lc.solve(program, solver=solver, **options)
    seconds_used = time.perf_counter() - start
    after = _status_bytes("VmHWM")
    print(json.dumps({"name": name, "solver": solver, "n": program.n, "d": program.d, "P": program.P,
                      "m": program.m, "entries": est.cone_entries,
                      "est_seconds": est.clarabel_seconds, "est_bytes": est.clarabel_bytes,
                      "est_engine_bytes": est.engine_bytes, "seconds": seconds_used,
                      "peak_increase": max(after - before, 0), "status": str(sol.status),
                      "objective": sol.objective}), flush=True)


def estimate_only(name):
    from lightning_convex.solvers import estimates

    program, _ = build(name)
    est = estimates.estimate(program)
    return {"name": name, "n": program.n, "d": program.d, "P": program.P, "m": program.m,
            "entries": est.cone_entries, "est_seconds": est.clarabel_seconds,
            "est_bytes": est.clarabel_bytes, "est_engine_bytes": est.engine_bytes}


def run_child(name, solver, seconds, limit, memory_gb):
    cmd = [sys.executable, __file__, "--child", name, "--solver", solver, "--seconds", str(seconds)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    def cap():
        gb = int(memory_gb * 1e9)
        resource.setrlimit(resource.RLIMIT_AS, (gb, gb))

    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, env=env, preexec_fn=cap)
    except subprocess.TimeoutExpired:
        return {"status": f"killed after {limit:.0f} s"}
    for line in out.stdout.splitlines()[::-1]:
        if line.startswith("{"):
            return json.loads(line)
    tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
    return {"status": f"failed: {tail[:80]}"}


def gb(x):
    return f"{x / 1e9:.3g}" if isinstance(x, (int, float)) else "-"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", action="append", default=None, help="ladder names to run")
    p.add_argument("--solver", action="append", default=None, choices=["clarabel", "engine"])
    p.add_argument("--limit", type=float, default=600.0, help="seconds before a child is killed")
    p.add_argument("--memory", type=float, default=8.0, help="GB of address space per child")
    p.add_argument("--seconds", type=float, default=120.0, help="the solve's time_limit")
    p.add_argument("--estimate-only", action="store_true")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.child, args.solver[0], args.seconds)
        return
    names = args.only or LADDER
    solvers = args.solver or ["clarabel", "engine"]
    print(f"# load average {os.getloadavg()}, limit {args.limit:.0f} s, {args.memory:g} GB per child")
    print("| program | n | d' | P | m | E = P n (m+1) d' | solver | est. s | measured s | est. GB | "
          "measured peak GB | status |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        if args.estimate_only:
            r = estimate_only(name)
            print(f"| {name} | {r['n']} | {r['d']} | {r['P']} | {r['m']} | {r['entries']:.3g} | - | "
                  f"{r['est_seconds']:.3g} | - | {gb(r['est_bytes'])} / engine {gb(r['est_engine_bytes'])} | - | "
                  "- |", flush=True)
            continue
        for solver in solvers:
            r = run_child(name, solver, args.seconds, args.limit, args.memory)
            est_s = r.get("est_seconds") if solver == "clarabel" else None
            est_b = r.get("est_bytes") if solver == "clarabel" else r.get("est_engine_bytes")
            print(f"| {name} | {r.get('n', '-')} | {r.get('d', '-')} | {r.get('P', '-')} | {r.get('m', '-')} | "
                  f"{r.get('entries', float('nan')):.3g} | {solver} | "
                  f"{'-' if est_s is None else f'{est_s:.3g}'} | {r.get('seconds', float('nan')):.3g} | "
                  f"{gb(est_b)} | {gb(r.get('peak_increase'))} | {r['status']} |", flush=True)


if __name__ == "__main__":
    main()
