"""Seconds per restricted solve and per certificate on Fashion-MNIST (issue 7, BENCHMARKS.md).

One class (one-vs-rest target y_c = 1[label = c]) and one depth-3 ParallelReLU with K branches of
width m and a bias column; its patterns after ``--sgd-epochs`` epochs of SGD define the restricted
program S = the network's own patterns (MATH.md section 3), on ``--device`` in ``--dtype``.

Measured, in this order:

* ``pass``: one :meth:`RestrictedProgram.forward` (A Q and G Q) and one
  :meth:`RestrictedProgram.adjoint` (A^T v + G^T mu) at a random Q: the unit of work of the
  matrix-free solver (one FISTA iteration is one of each, plus backtracking forwards);
* ``certificate``: the MATH.md section 5 bound from given multipliers: residual v = y - f(X),
  one adjoint pass, group norms, float64 arithmetic (what checking a certificate costs once mu
  is known);
* ``solve``: ``solve(program, solver="torch", method="alm")`` warm-started from the network, with
  ``--max-iter`` / ``--time-limit``: seconds, iterations, passes, certified gap reached, J.
  ``--skip-solve`` measures the first two only (for sizes where a solve does not fit the time).

Memory: ``torch.cuda.max_memory_allocated`` on a GPU; on the CPU the increase of the process's
peak RSS (getrusage) over the solve, plus the solver's own count of its row buffers.

Example (CPU, the Figure-5 size, passes only)::

    python benchmarks/fashion.py --n 60000 --K 40 --m 100 --skip-solve --json fig5_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import torch

import lightning_convex as lc
from lightning_convex.fashion_mnist import load_fashion_mnist


def rss_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device):
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--n", type=int, default=60000)
    p.add_argument("--K", type=int, default=40)
    p.add_argument("--m", type=int, default=100)
    p.add_argument("--cls", type=int, default=0, help="the class c of the one-vs-rest target")
    p.add_argument("--beta", type=float, default=10.0)
    p.add_argument("--sgd-epochs", type=int, default=1)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--device", default="auto")
    p.add_argument("--max-iter", type=int, default=300)
    p.add_argument("--time-limit", type=float, default=300.0)
    p.add_argument("--tol", type=float, default=1e-3)
    p.add_argument("--skip-solve", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    dtype = getattr(torch, args.dtype)
    record = {"args": vars(args), "device": str(device), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine()}
    if device.type == "cuda":
        record["gpu"] = torch.cuda.get_device_name(device)

    ds = load_fashion_mnist(args.data_dir)
    if args.n < ds.n:
        ds = ds.subsample(args.n, 100, seed=args.seed)
    X = ds.X_train.to(device=device, dtype=dtype)
    y = ds.targets(args.cls).to(device=device, dtype=dtype)
    torch.manual_seed(args.seed)
    net = lc.ParallelReLU(X.shape[1], args.m, args.K, bias=True).to(device=device, dtype=dtype)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    t0 = time.perf_counter()
    for _ in range(args.sgd_epochs):
        for idx in torch.randperm(X.shape[0], device=device).split(256):
            loss = 0.5 * (net(X[idx]) - y[idx]).square().mean() + args.beta / X.shape[0] * net.regularizer()
            opt.zero_grad()
            loss.backward()
            opt.step()
    record["sgd_seconds"] = time.perf_counter() - t0

    pats = lc.patterns_of(net, X)
    pats = pats.select(~pats.is_degenerate()).unique()
    program = lc.RestrictedProgram(X, y, pats, args.beta, dtype=dtype)
    record["program"] = {"n": program.n, "d_prime": program.d, "P": program.P, "m": program.m,
                         "cone_rows": program.num_cone_rows, "variables": program.num_variables}
    print(f"{program}  cone rows {program.num_cone_rows:,}  variables {program.num_variables:,}", flush=True)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss0 = rss_bytes()
    Q = torch.randn(program.shape, device=device, dtype=dtype) * 1e-3
    (pred, R1, R2), t_fwd = timed(lambda: program.forward(Q), device)
    _, t_adj = timed(lambda: program.adjoint(pred, R1.abs(), None if R2 is None else R2.abs()), device)
    record["pass_seconds"] = {"forward": t_fwd, "adjoint": t_adj}
    print(f"pass: forward {t_fwd:.3f}s adjoint {t_adj:.3f}s", flush=True)
    mu1, mu2 = R1.abs(), (None if R2 is None else R2.abs())
    del pred, R1, R2

    def bound():
        v = y.double() - lc.predict(net, X)
        b = float(program.adjoint(v.to(dtype), mu1, mu2).double().norm(dim=2).max())
        vy, vv = float(v @ y.double()), float(v @ v)
        c = min(max(vy / vv, 0.0), args.beta / b) if b > 0 else max(vy / vv, 0.0)
        return c * vy - 0.5 * c * c * vv

    _, t_cert = timed(bound, device)
    record["certificate_seconds"] = t_cert
    print(f"certificate (bound from given multipliers): {t_cert:.3f}s", flush=True)
    del mu1, mu2

    if not args.skip_solve:
        J0 = lc.objective(net, X, y, args.beta)
        sol, t_solve = timed(lambda: lc.solve(program, solver="torch", method="alm", warm_start=net,
                                              tol=args.tol, max_iter=args.max_iter,
                                              time_limit=args.time_limit), device)
        info = sol.info
        record["solve"] = {
            "seconds": t_solve, "status": str(sol.status), "iterations": sol.iterations,
            "passes": info.get("passes"), "setup_seconds": info.get("setup_seconds"),
            "seconds_per_iteration": (t_solve - info.get("setup_seconds", 0.0)) / max(sol.iterations, 1),
            "gap": info.get("gap"), "objective_network": J0, "objective_solution": sol.objective,
            "violation_rel": info.get("violation_rel"), "buffer_bytes": info.get("buffer_bytes"),
            "peak_memory_bytes": info.get("peak_memory_bytes"), "memory_method": info.get("memory_method"),
        }
        print(f"solve: {t_solve:.1f}s status {sol.status} iterations {sol.iterations} passes "
              f"{info.get('passes')} gap {info.get('gap'):.3e} J {J0:.6g} -> {sol.objective:.6g}", flush=True)
    if device.type == "cuda":
        record["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated(device))
    else:
        record["peak_rss_increase_bytes"] = rss_bytes() - rss0
        record["peak_rss_bytes"] = rss_bytes()
    print(json.dumps({k: v for k, v in record.items() if k != "args"}, indent=1, default=str))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(record, fh, indent=1, default=str)
    return record


if __name__ == "__main__":
    main()
