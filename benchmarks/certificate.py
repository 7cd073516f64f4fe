"""Certificate cost against one training epoch (issue 4), at the paper's Figure-5 size by default.

    python benchmarks/certificate.py                      # n=60000, d=784, K=40, m=100
    python benchmarks/certificate.py --n 6000 --repeat 2  # a smaller run
    python benchmarks/certificate.py --n 2000 --d 20 --K 10 --m 10 --beta 1 --lr 1e-2 \
        --batch-size 200 --epochs 300 --reference               # quality against OPT(S)

Random data of the given shape (X ~ N(0, 1), y from a random two-branch teacher plus noise),
float32 training with Adam (the ParallelReLURegressor loss: 1/2 ||f - y||^2 + beta R |b| / n per
mini-batch), then :func:`lightning_convex.certify` of the trained network on all n rows (float64
on the network's device) with its default settings. Prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

import lightning_convex as lc


def train_epoch(net, X, y, beta, batch_size, opt):
    n = X.shape[0]
    perm = torch.randperm(n, device=X.device)
    for start in range(0, n, batch_size):
        idx = perm[start : start + batch_size]
        loss = 0.5 * (net(X[idx]) - y[idx]).square().sum() + beta * net.regularizer() * idx.numel() / n
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        net.project_()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=60000)
    parser.add_argument("--d", type=int, default=784)
    parser.add_argument("--K", type=int, default=40)
    parser.add_argument("--m", type=int, default=100)
    parser.add_argument("--beta", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=1, help="training epochs before certifying (timed each)")
    parser.add_argument("--repeat", type=int, default=1, help="certificates to time")
    parser.add_argument("--search", type=int, default=0)
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--support", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--refine", choices=["auto", "on", "off"], default="auto")
    parser.add_argument("--reference", action="store_true",
                        help="also solve the restricted program (Clarabel) for OPT(S)")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    X = torch.randn(args.n, args.d, device=device)
    teacher = torch.randn(args.d, 2, device=device) / args.d ** 0.5
    y = torch.relu(X @ teacher[:, 0]) - torch.relu(X @ teacher[:, 1]) + 0.1 * torch.randn(args.n, device=device)
    net = lc.ParallelReLU(args.d, args.m, args.K, bias=True).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    machine = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "load_avg": os.getloadavg()[0],
        "torch": torch.__version__,
    }
    print(json.dumps({"machine": machine, "args": vars(args)}), flush=True)
    epoch_seconds = []
    for epoch in range(args.epochs):
        sync(device)
        start = time.perf_counter()
        train_epoch(net, X, y, args.beta, args.batch_size, opt)
        sync(device)
        epoch_seconds.append(time.perf_counter() - start)
        if epoch < 3 or epoch == args.epochs - 1:
            print(json.dumps({"epoch": epoch, "seconds": round(epoch_seconds[-1], 2)}), flush=True)
    kwargs = {}
    if args.iterations is not None:
        kwargs["iterations"] = args.iterations
    if args.support is not None:
        kwargs["support"] = args.support
    if args.refine != "auto":
        kwargs["refine"] = args.refine == "on"
    for rep in range(args.repeat):
        sync(device)
        start = time.perf_counter()
        cert = lc.certify(net, X, y, args.beta, search=args.search,
                          generator=torch.Generator().manual_seed(rep), **kwargs)
        sync(device)
        seconds = time.perf_counter() - start
        print(json.dumps({
            "certificate_seconds": round(seconds, 2),
            "epoch_seconds": round(min(epoch_seconds), 2),
            "ratio": round(seconds / min(epoch_seconds), 2),
            "primal": cert.primal, "lower_bound": cert.lower_bound, "relative_gap": cert.relative_gap,
            "B_max_over_beta": cert.info["B_max"] / args.beta, "iterations": cert.info["iterations"],
            "support": cert.info["support"], "refined": cert.refined, "load_avg": os.getloadavg()[0],
        }), flush=True)
    if args.reference:
        start = time.perf_counter()
        program = lc.RestrictedProgram(X, y, lc.patterns_of(net, X), args.beta)
        solution = lc.solve(program, solver="clarabel")
        print(json.dumps({"reference_seconds": round(time.perf_counter() - start, 2),
                          "OPT_S": solution.objective, "status": str(solution.status),
                          "lower_bound_over_OPT": cert.lower_bound / solution.objective,
                          "gap_to_OPT_over_J": (cert.primal - solution.objective) / cert.primal}), flush=True)


if __name__ == "__main__":
    main()
