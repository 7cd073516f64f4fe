"""SGD against hybrid SGD + convex solves on Fashion-MNIST (the paper's Figure 5 setting).

Ten classes by one-vs-rest squared loss (see :mod:`lightning_convex.fashion_mnist`): one scalar
ParallelReLU per class (depth 3, K branches of width m, path-norm regularisation, bias column),
objective J = sum_c [1/2 ||f_c(X) - y_c||^2 + beta R(theta_c)] in the paper's sum form.

* ``sgd``: minibatch SGD (momentum 0.9) on J / n, trained for the same wall time as the hybrid
  (checkpoints at the hybrid's checkpoint times).
* ``hybrid``: the same SGD, and every ``--hybrid-every`` epochs, for each class: read the
  network's own patterns S_c, solve the restricted program over S_c with ``solver="torch"``
  (the matrix-free ``"alm"`` method, warm-started from the network, time-limited), rebuild the
  solution into the K branches with ``load_solution_`` and keep it only if J_c decreases.

At every checkpoint both runs are certified: for each class a time-limited torch solve over the
network's own pattern set gives multipliers mu; with them, for v the network's residual and v the
solver's residual, MATH.md section 5 gives the valid lower bound g(c v) on OPT(S_c), and the
certified gap is (sum_c J_c - sum_c LB_c) / sum_c J_c. It bounds J - OPT(S_1..S_10) (the
networks' own pattern sets at that moment), NOT J - OPT(global). ``lightning_convex.certify`` is
not in this installation's main branch yet, so :func:`lower_bound` below does this arithmetic
(float64) from the solver's multipliers. Certification and evaluation time is excluded from the
time axis; the hybrid's solves are included.

Figure-5 size is the default (n = 60000, d = 784, K = 40, m = 100) and wants a GPU; shrink it on a
CPU, e.g.::

    python examples/fashion_mnist.py --n 2000 --n-test 1000 --K 4 --m 8 --classes 3 --epochs 4 \\
        --solve-time 20 --out fashion_small.png

Reads the IDX files of the Debian package ``dataset-fashion-mnist`` (or ``--data-dir``); nothing
is downloaded.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time

import torch

import lightning_convex as lc
from lightning_convex.fashion_mnist import CLASSES, load_fashion_mnist

#: SGD stops early if it would need more epochs than this to match the hybrid's time
MAX_SGD_EPOCHS = 10000


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None, help="folder with the four IDX files (default: the Debian package's)")
    p.add_argument("--n", type=int, default=60000, help="training rows (class-stratified subsample)")
    p.add_argument("--n-test", type=int, default=10000)
    p.add_argument("--classes", type=int, default=10, help="use labels 0..C-1 only (C-way problem)")
    p.add_argument("--K", type=int, default=40, help="branches per class network")
    p.add_argument("--m", type=int, default=100, help="first-layer width of each branch")
    p.add_argument("--beta", type=float, default=10.0, help="regularisation weight (sum form)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.01, help="SGD step on J / n")
    p.add_argument("--hybrid-every", type=int, default=1, help="epochs between convex solves")
    p.add_argument("--solve-time", type=float, default=60.0, help="seconds per class per solve")
    p.add_argument("--solve-iters", type=int, default=5000, help="FISTA iterations per class per solve")
    p.add_argument("--tol", type=float, default=1e-3, help="certified-gap tolerance of each solve")
    p.add_argument("--cert-time", type=float, default=None, help="seconds per class per certificate (default: --solve-time)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="fashion_mnist.png", help="PNG path for the plot")
    p.add_argument("--json", default=None, help="write the logged curves here")
    args = p.parse_args(argv)
    if not 2 <= args.classes <= len(CLASSES):
        p.error(f"--classes must be in [2, {len(CLASSES)}]")
    for name in ("n", "n_test", "K", "m", "epochs", "batch_size", "hybrid_every", "solve_iters"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be positive")
    if args.beta <= 0 or args.lr <= 0 or args.solve_time <= 0 or not 0 < args.tol < 1:
        p.error("--beta, --lr, --solve-time must be positive and --tol in (0, 1)")
    args.cert_time = args.solve_time if args.cert_time is None else args.cert_time
    return args


def load(args, device):
    ds = load_fashion_mnist(args.data_dir)
    keep_tr = ds.labels_train < args.classes
    keep_te = ds.labels_test < args.classes
    ds = type(ds)(ds.X_train[keep_tr], ds.labels_train[keep_tr], ds.X_test[keep_te], ds.labels_test[keep_te],
                  ds.scaling)
    ds = ds.subsample(min(args.n, ds.n), min(args.n_test, ds.X_test.shape[0]), seed=args.seed)
    Y = torch.nn.functional.one_hot(ds.labels_train, args.classes).float()
    return (ds.X_train.to(device), Y.to(device), ds.X_test.to(device), ds.labels_test.to(device))


def make_nets(args, d, device):
    torch.manual_seed(args.seed)
    return [lc.ParallelReLU(d, args.m, args.K, bias=True).to(device) for _ in range(args.classes)]


def sgd_epoch(nets, opt, X, Y, beta, batch, gen):
    n = X.shape[0]
    order = torch.randperm(n, generator=gen).to(X.device)
    for start in range(0, n, batch):
        idx = order[start:start + batch]
        out = torch.stack([net(X[idx]) for net in nets], dim=1)
        # J / n estimated on the batch: the data term is an average, the regulariser is exact
        loss = 0.5 * (out - Y[idx]).square().sum(dim=1).mean() + beta / n * sum(net.regularizer() for net in nets)
        opt.zero_grad()
        loss.backward()
        opt.step()


@torch.no_grad()
def accuracy(nets, X, labels):
    scores = torch.stack([lc.predict(net, X) for net in nets], dim=1)
    return float((scores.argmax(dim=1) == labels).float().mean())


def own_program(net, X, y, beta):
    pats = lc.patterns_of(net, X)
    pats = pats.select(~pats.is_degenerate()).unique()
    if len(pats) == 0:
        return None
    return lc.RestrictedProgram(X, y, pats, beta, dtype=torch.float32)


def lower_bound(program, solution, residuals):
    """Best MATH.md section 5 bound g(c v) over the given v's, with the solver's multipliers."""
    if solution.multipliers is None:
        return 0.0
    mu1, mu2 = solution.multipliers
    y = program.y.double()
    best = 0.0
    for v in residuals:
        v = v.to(program.device).double()
        bound = float(program.adjoint(v.to(program.dtype), mu1, mu2).double().norm(dim=2).max())
        vy, vv = float(v @ y), float(v @ v)
        if vv == 0.0:
            continue
        c = max(0.0, vy / vv)
        if bound > 0:
            c = min(c, program.beta / bound)
        best = max(best, c * vy - 0.5 * c * c * vv)
    return best


def solve_own(net, X, y, beta, seconds, args):
    program = own_program(net, X, y, beta)
    if program is None:
        return None, None
    sol = lc.solve(program, solver="torch", method="alm", warm_start=net, tol=args.tol,
                   time_limit=seconds, max_iter=args.solve_iters)
    return program, sol


def hybrid_step(nets, X, Y, beta, args):
    """One convex solve per class; a rebuilt network replaces the old one only if J_c drops."""
    kept = 0
    for c, net in enumerate(nets):
        y = Y[:, c]
        program, sol = solve_own(net, X, y, beta, args.solve_time, args)
        if sol is None or not bool(torch.isfinite(sol.Q).all()):
            continue
        J_old = lc.objective(net, X, y, beta)
        candidate = copy.deepcopy(net)
        try:
            lc.load_solution_(candidate, sol)
        except ValueError:
            continue
        if lc.objective(candidate, X, y, beta) < J_old:
            net.load_state_dict(candidate.state_dict())
            kept += 1
    return kept


def certificate(nets, X, Y, beta, args):
    """(sum J_c, sum LB_c): LB_c certifies J_c against OPT over the network's own pattern set."""
    total_J = total_LB = 0.0
    for c, net in enumerate(nets):
        y = Y[:, c]
        J = lc.objective(net, X, y, beta)
        total_J += J
        program, sol = solve_own(net, X, y, beta, args.cert_time, args)
        if sol is None:  # no pattern with a non-empty mask: f = 0, and J_c = OPT(S) trivially
            total_LB += J
            continue
        v_net = y.double() - lc.predict(net, X)
        total_LB += min(J, lower_bound(program, sol, [v_net, sol.residual]))
    return total_J, total_LB


def run(kind, args, data, device, times=None):
    X, Y, Xte, labels_te = data
    nets = make_nets(args, X.shape[1], device)
    params = [p for net in nets for p in net.parameters()]
    opt = torch.optim.SGD(params, lr=args.lr, momentum=0.9)
    gen = torch.Generator().manual_seed(args.seed)
    log = {"time": [], "epoch": [], "test_accuracy": [], "objective": [], "lower_bound": [], "gap": []}
    clock = 0.0

    def checkpoint(epoch):
        t0 = time.perf_counter()
        J, LB = certificate(nets, X, Y, args.beta, args)
        log["time"].append(clock)
        log["epoch"].append(epoch)
        log["test_accuracy"].append(accuracy(nets, Xte, labels_te))
        log["objective"].append(J)
        log["lower_bound"].append(LB)
        log["gap"].append((J - LB) / J if J > 0 else 0.0)
        print(f"[{kind}] epoch {epoch:3d} train-time {clock:8.1f}s acc {log['test_accuracy'][-1]:.4f} "
              f"J {J:.6g} LB {LB:.6g} certified gap {log['gap'][-1]:.3e} "
              f"(certify {time.perf_counter() - t0:.1f}s)", flush=True)

    checkpoint(0)
    epoch = 0
    # the hybrid runs --epochs epochs; SGD then trains until each of the hybrid's checkpoint
    # times, so both curves cover the same training time
    targets = [None] * args.epochs if times is None else times[1:]
    for target in targets:
        while True:
            t0 = time.perf_counter()
            epoch += 1
            sgd_epoch(nets, opt, X, Y, args.beta, args.batch_size, gen)
            if kind == "hybrid" and epoch % args.hybrid_every == 0:
                kept = hybrid_step(nets, X, Y, args.beta, args)
                print(f"[hybrid] epoch {epoch}: {kept}/{len(nets)} rebuilt networks kept (J decreased)",
                      flush=True)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            clock += time.perf_counter() - t0
            if target is None or clock >= target or epoch >= MAX_SGD_EPOCHS:
                break
        checkpoint(epoch)
    return log


def plot(logs, path, args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for kind, log in logs.items():
        axes[0].plot(log["time"], log["test_accuracy"], marker="o", label=kind)
        axes[1].plot(log["time"], log["objective"], marker="o", label=kind)
        axes[2].semilogy(log["time"], [max(g, 1e-12) for g in log["gap"]], marker="o", label=kind)
    axes[0].set_ylabel("test accuracy")
    axes[1].set_ylabel("J (sum form, all classes)")
    axes[2].set_ylabel("certified relative gap vs OPT(own patterns)")
    for ax in axes:
        ax.set_xlabel("training time (s)")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(f"Fashion-MNIST, {args.classes} classes one-vs-rest, n={args.n}, K={args.K}, m={args.m}, "
                 f"beta={args.beta}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    args = parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    data = load(args, device)
    print(f"data: {tuple(data[0].shape)} train, {tuple(data[2].shape)} test, {args.classes} classes, "
          f"device {device}", flush=True)
    logs = {"hybrid": run("hybrid", args, data, device)}
    logs["sgd"] = run("sgd", args, data, device, times=logs["hybrid"]["time"])
    plot(logs, args.out, args)
    print(f"plot written to {args.out}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "logs": logs}, fh, indent=1)
    return logs


if __name__ == "__main__":
    main()
