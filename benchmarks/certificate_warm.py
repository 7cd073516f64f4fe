"""Carried engine state against a cold start, at a fixed number of engine iterations per
certificate (deterministic: no clock), over the epochs of one training run on Fashion-MNIST;
with ``--limits SECONDS``, what the bound of the last epoch's network is limited by.

After every epoch of Adam (batch 256, lr 1e-3, beta 1, K = 10, m = 10, bias, one-vs-rest class
``--cls``, standardised pixels, class-stratified subsample ``--seed``) the network is certified
twice with ``method="engine", max_iter=ITERS``: cold, and continuing the previous epoch's
certificate (``warm_start``). Prints J and both bounds, and the share 1/2 sum y_i^2 of the rows
no pattern of S reaches (a part of OPT(S) every point of S pays).

``--limits``: for the last network, the engine certificate at 30 and 400 iterations, and the
engine solve of the same program from Q = 0 for SECONDS (its objective is an upper bound on
OPT(S), its certified lower bound a lower one): how far the network is from OPT(S), and how
far the certificate's bound is.

``--certify-seconds SECONDS``: the last network certified as a user would at the end of a fit,
``lc.certify(net, X, y, 1.0, time_limit=SECONDS)`` (method ``"auto"``): its bound, gap and time.

    python benchmarks/certificate_warm.py 2000 10 6     # n, iterations per certificate, epochs
    python benchmarks/certificate_warm.py 10000 2 10 --limits 120
    python benchmarks/certificate_warm.py 10000 2 10 --certify-seconds 120
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from adam_epochs import adam_epoch  # noqa: E402

import lightning_convex as lc  # noqa: E402
from lightning_convex.fashion_mnist import load_fashion_mnist  # noqa: E402
from lightning_convex.program import RestrictedProgram  # noqa: E402
from lightning_convex.solvers import solve  # noqa: E402


def free_share(cert, y):
    S = cert.patterns
    M = S.D1 if S.D2 is None else S.D1 & S.D2[:, :, None]
    return 0.5 * float(y[~M.any(dim=2).any(dim=0)].double().square().sum())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n", type=int)
    parser.add_argument("iters", type=int)
    parser.add_argument("epochs", type=int)
    parser.add_argument("--cls", type=int, default=0)
    parser.add_argument("--seed", type=int, default=1, help="the subsample's seed (the fit's is 0)")
    parser.add_argument("--limits", type=float, default=None, metavar="SECONDS")
    parser.add_argument("--certify-seconds", type=float, default=None, metavar="SECONDS")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    ds = load_fashion_mnist().subsample(args.n, 100, seed=args.seed)
    X, y = ds.X_train.float(), ds.targets(args.cls).float()
    n = args.n
    torch.manual_seed(0)
    net = lc.ParallelReLU(784, 10, 10, bias=True)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    warm = None
    for epoch in range(args.epochs):
        adam_epoch(net, optimizer, X, y, gen)
        cold = lc.certify(net, X, y, 1.0, method="engine", max_iter=args.iters)
        warm = lc.certify(net, X, y, 1.0, method="engine", max_iter=args.iters, warm_start=warm)
        print(json.dumps(dict(epoch=epoch, J=round(cold.primal, 3), cold=round(cold.lower_bound, 4),
                              cold_v=cold.info["v"], warm=round(warm.lower_bound, 4), warm_v=warm.info["v"],
                              free_share=round(free_share(cold, y), 3),
                              total_iterations=warm.info["total_iterations"])), flush=True)
    if args.limits:
        for iters in (30, 400):
            start = time.perf_counter()
            cert = lc.certify(net, X, y, 1.0, method="engine", max_iter=iters)
            print(json.dumps(dict(certificate_iterations=iters, J=round(cert.primal, 3),
                                  lower_bound=round(cert.lower_bound, 4), v=cert.info["v"],
                                  seconds=round(time.perf_counter() - start, 2))), flush=True)
        program = RestrictedProgram(X, y, cert.patterns, 1.0)
        sol = solve(program, solver="engine", time_limit=args.limits, tol=1e-3, progress=False)
        print(json.dumps(dict(solve_seconds=args.limits, start="Q = 0", objective=round(sol.info["objective"], 4),
                              lower_bound=round(sol.info["lower_bound"], 4), iterations=sol.info["iterations"],
                              status=str(sol.status))), flush=True)
    if args.certify_seconds:
        start = time.perf_counter()
        cert = lc.certify(net, X, y, 1.0, time_limit=args.certify_seconds)
        print(json.dumps(dict(certify_time_limit=args.certify_seconds, method=cert.method,
                              J=round(cert.primal, 3), lower_bound=round(cert.lower_bound, 4),
                              relative_gap=round(cert.relative_gap, 4),
                              seconds=round(time.perf_counter() - start, 2))), flush=True)


if __name__ == "__main__":
    main()
