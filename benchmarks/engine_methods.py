"""Certified gap against passes and seconds for the engine's methods (issue 13, deliverable 1).

The program: Fashion-MNIST, ``--n`` rows (class-stratified subsample), one-vs-rest target
y = 1[label = ``--cls``], standardised pixels plus a bias column (d' = 785), and the patterns
of a ParallelReLU (``--K`` branches of width ``--m``) after ``--epochs`` Adam epochs (lr 1e-3,
batch 256, loss 1/(2n) ||f - y||^2 + beta/n R, i.e. J / n), deduplicated and without empty
ones: S = the network's own active set (MATH.md section 3), beta = ``--beta``.

Methods (``--method``, repeatable):

* ``admm``, ``pdhg``: :func:`lightning_convex.engine.solve` with that method, warm-started from
  the network, run for ``--seconds`` (tol ``--tol``: it stops early once certified); one CSV
  row per certificate check (every ``--check-every`` iterations);
* ``alm``: the torch backend's augmented Lagrangian (``solve(..., solver="torch",
  method="alm")``), warm-started from the network, one row at the end (it has no callback);
* ``clarabel``: the exact reference (small programs only: ``--uci NAME`` instead of
  Fashion-MNIST; one row).

Each row: method, n, P, iteration, passes (forward + adjoint products over all rows, two
products a pass), seconds (wall, from the call), objective, lower_bound (the MATH.md section-5
bound of that check), gap, violation_rel, and for the final row of an engine run the bound
recomputed independently from ``solution.residual`` and ``solution.multipliers``
(:func:`lightning_convex.duality.program_bound`). Seconds depend on the machine's load (the
script prints the load average and torch's thread count); passes do not.

Examples (the comparison of the issue-13 report)::

    python benchmarks/engine_methods.py --n 1000 --seconds 60 --tol 1e-3 --method admm \\
        --method pdhg --method alm --csv engine_n1000.csv
    python benchmarks/engine_methods.py --n 300 --seconds 30 --tol 1e-3 --method admm \\
        --method pdhg --method alm --threads 1 --csv engine_n300.csv
    python benchmarks/engine_methods.py --uci acute-inflammation --beta 0.1 --m 7 --epochs 300 \\
        --seconds 30 --tol 1e-4 --method clarabel --method admm --method pdhg --threads 1
"""

from __future__ import annotations

import argparse
import csv
import os
import time

import torch

import lightning_convex as lc
from lightning_convex import engine
from lightning_convex.duality import program_bound, relative_gap
from lightning_convex.engine.certify import violation_scale

FIELDS = ["method", "n", "P", "iteration", "passes", "seconds", "objective", "lower_bound", "gap",
          "violation_rel", "independent_gap", "status"]


def adam_network(X, y, K, m, beta, epochs, seed, bias=True):
    """A ParallelReLU after ``epochs`` Adam epochs (lr 1e-3, batch 256) on J / n."""
    torch.manual_seed(seed)
    n = X.shape[0]
    net = lc.ParallelReLU(X.shape[1], m, K, bias=bias)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    Xf, yf = X.float(), y.float()
    for _ in range(epochs):
        for idx in torch.randperm(n).split(256):
            loss = 0.5 * (net(Xf[idx]) - yf[idx]).square().mean() + beta / n * net.regularizer()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net


def fashion_program(n, cls=0, seed=0, K=10, m=10, beta=1.0, epochs=3, data_dir=None):
    """(program, network, J of the network) for the Fashion-MNIST setting of the module docstring."""
    from lightning_convex.fashion_mnist import load_fashion_mnist

    ds = load_fashion_mnist(data_dir)
    if n < ds.n:
        ds = ds.subsample(n, 100, seed=seed)
    X, y = ds.X_train.double(), ds.targets(cls).double()
    net = adam_network(X, y, K, m, beta, epochs, seed)
    return _program(X, y, net, beta)


def uci_program(name, seed=0, K=10, m=7, beta=0.1, epochs=300):
    """The same construction on a UCI set (all rows standardised, bias column)."""
    ds = lc.data.load_uci(name, split="all")
    X = ds.X_train.double()
    X = (X - X.mean(0)) / X.std(0).clamp_min(1e-12)
    y = ds.y_train.double()
    net = adam_network(X, y, K, m, beta, epochs, seed)
    return _program(X, y, net, beta)


def _program(X, y, net, beta):
    pats = lc.patterns_of(net, X)
    pats = pats.select(~pats.is_degenerate()).unique()
    program = lc.RestrictedProgram(X, y, pats, beta)
    return program, net, lc.objective(net, X, y, beta)


def relative_violation(program, sol):
    """max(0, -min G Q) / max(||y||_inf, ||A Q||_inf), the engine's unit (certify.violation_scale)."""
    pred = (program.y - sol.residual).double()
    return sol.constraint_violation / violation_scale(program.y.double(), pred)


def run_engine(program, net, method, seconds, tol, check_every, dtype):
    rows = []
    t0 = time.perf_counter()
    sol = engine.solve(program, time_limit=seconds, tol=tol, warm_start=net, method=method, dtype=dtype,
                       check_every=check_every)
    for rec in sol.info["history"]:
        rows.append({"method": method, "iteration": rec["iteration"], "passes": rec["passes"],
                     "seconds": rec["seconds"], "objective": rec["objective"], "lower_bound": rec["lower_bound"],
                     "gap": rec["gap"], "violation_rel": rec["violation_rel"]})
    bound = program_bound(program, sol.residual, sol.multipliers)
    rows.append({"method": method, "iteration": sol.iterations, "passes": sol.info["passes"],
                 "seconds": time.perf_counter() - t0, "objective": sol.objective, "lower_bound": sol.info["lower_bound"],
                 "gap": sol.info["gap"], "violation_rel": relative_violation(program, sol),
                 "independent_gap": relative_gap(sol.objective, bound.value), "status": str(sol.status)})
    return rows


def run_backend(program, net, solver, seconds, tol, **options):
    t0 = time.perf_counter()
    if solver == "torch":
        sol = lc.solve(program, solver="torch", method="alm", warm_start=net, time_limit=seconds, tol=tol,
                       dtype=torch.float32, **options)
        name = "alm"
    else:
        sol = lc.solve(program, solver=solver, **options)
        name = solver
    gap = float("nan")
    if sol.multipliers is not None:
        gap = relative_gap(sol.objective, program_bound(program, sol.residual, sol.multipliers).value)
    return [{"method": name, "iteration": sol.iterations, "passes": sol.info.get("passes", ""),
             "seconds": time.perf_counter() - t0, "objective": sol.objective,
             "lower_bound": sol.info.get("lower_bound", ""), "gap": sol.info.get("gap", ""),
             "violation_rel": relative_violation(program, sol), "independent_gap": gap,
             "status": str(sol.status)}]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--uci", default=None, help="a UCI set name instead of Fashion-MNIST")
    p.add_argument("--cls", type=int, default=0)
    p.add_argument("--K", type=int, default=10)
    p.add_argument("--m", type=int, default=10)
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--method", action="append", choices=["admm", "pdhg", "alm", "clarabel"])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--tol", type=float, default=1e-2)
    p.add_argument("--check-every", type=int, default=25)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--csv", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    methods = args.method or ["admm", "pdhg"]
    if args.uci:
        program, net, J = uci_program(args.uci, seed=args.seed, K=args.K, m=args.m, beta=args.beta,
                                      epochs=args.epochs)
    else:
        program, net, J = fashion_program(args.n, args.cls, args.seed, args.K, args.m, args.beta, args.epochs)
    print(f"{program}  J(network) = {J:.6g}  threads {torch.get_num_threads()}  load {os.getloadavg()}",
          flush=True)
    rows = []
    for method in methods:
        if method in ("admm", "pdhg"):
            out = run_engine(program, net, method, args.seconds, args.tol, args.check_every,
                             getattr(torch, args.dtype))
        elif method == "alm":
            out = run_backend(program, net, "torch", args.seconds, args.tol)
        else:
            out = run_backend(program, net, "clarabel", args.seconds, args.tol)
        for row in out:
            row.update(n=program.n, P=program.P)
        rows += out
        last = out[-1]
        fmt = lambda x: f"{x:.3e}" if isinstance(x, float) else str(x)  # noqa: E731
        print(f"{method:9s} passes {last['passes']!s:>8} seconds {last['seconds']:7.2f} J {last['objective']:.8g} "
              f"gap {fmt(last['gap'])} independent {fmt(last['independent_gap'])} "
              f"violation {fmt(last['violation_rel'])} {last.get('status', '')} load {os.getloadavg()[0]:.2f}",
              flush=True)
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=FIELDS)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: row.get(k, "") for k in FIELDS})
    return rows


if __name__ == "__main__":
    main()
