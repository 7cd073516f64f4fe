"""Restricted-solve benchmark (issue 3): OSQP backend against Clarabel, CVXPY+SCS, CVXPY+Clarabel.

Programs come from networks briefly trained with Adam (path norm, beta = 0.1, K = 10, m = 7,
bias column): the six UCI sets of ../shared/data/uci (their training split) and synthetic data
with n in {500, 2000}, d in {10, 30}; on two-layer UCI programs the pyscnn package (augmented
Lagrangian) runs too when it is installed. For every program the solvers run interleaved
(repeat r: osqp cold, osqp warm, clarabel, cvxpy+SCS, cvxpy+Clarabel, ...) so that machine load
affects them alike; the table reports median seconds and the relative objective error
(F - F*) / F* against the Clarabel optimum of the same program (negative: below it).

"osqp warm" solves the program of the network after a few more Adam steps (a slightly changed
pattern set) warm-started from the osqp solution of the original program; "osqp cold*" is the
cold solve of that same changed program, for comparison.

Usage:
    python benchmarks/solvers.py [--quick] [--repeats R] [--limit SECONDS] [--osqp-max-iter N]
                                 [--suite all|three-layer|two-layer] [--only NAME] [--out FILE]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_convex import ParallelReLU, RestrictedProgram, patterns_of, solve  # noqa: E402
from lightning_convex.data import UCI_SETS, load_uci  # noqa: E402

BETA, K, M = 0.1, 10, 7


def train(net, X, y, steps, lr=1e-2):
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = 0.5 * (net(X) - y).square().sum() + BETA * net.regularizer()
        loss.backward()
        opt.step()
    return net


def programs(quick: bool, depth: int = 3, only=None):
    """(name, program, changed_program, gates) for the programs whose name contains ``only``."""
    out = []
    sets = [(name, load_uci(name)) for name in UCI_SETS]
    for name, ds in sets:
        X, y = ds.X_train.double(), ds.y_train.double()
        out.append((name, X, y, 200))
    if depth == 3:
        sizes = [(500, 10)] if quick else [(500, 10), (500, 30), (2000, 10), (2000, 30)]
        for n, d in sizes:
            g = torch.Generator().manual_seed(n + d)
            X = torch.randn(n, d, generator=g, dtype=torch.float64)
            w = torch.randn(d, generator=g, dtype=torch.float64)
            y = torch.relu(X @ w) - 0.5 * torch.relu(-X @ w) + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
            out.append((f"synthetic n={n} d={d}", X, y, 100))
    for name, X, y, steps in out:
        if only is not None and only not in name:
            continue
        torch.manual_seed(0)
        net = ParallelReLU(X.shape[1], M if depth == 3 else 1, K, depth=depth, bias=True).double()
        train(net, X, y, steps)
        prog = RestrictedProgram(X, y, patterns_of(net, X), BETA)
        gates = net.W1.detach()[:, :, 0].T.numpy().copy()  # depth 2: the neurons' u_k, (d', K)
        train(net, X, y, 5)  # a few more steps: the pattern set changes slightly
        changed = RestrictedProgram(X, y, patterns_of(net, X), BETA)
        kept = sum(k >= 0 for k in changed.patterns.index_in(prog.patterns))
        print(f"# {name}: {kept} of {changed.P} patterns unchanged after the 5 extra steps", flush=True)
        yield name, prog, changed, gates


def timed(fn):
    t = time.perf_counter()
    sol = fn()
    return time.perf_counter() - t, sol


def pyscnn_solve(prog: RestrictedProgram, gates: np.ndarray):
    """The two-layer program through pyscnn's ConvexReLU + augmented Lagrangian, or None.

    pyscnn's ConvexReLU with gates G carries, per gate, a positive and a negative neuron with the
    same D: that is our depth-2 program whose pattern set holds each D with both signs. Its loss
    is ||.||^2 / (2n), so lambda = beta / n gives our objective divided by n.
    """
    try:
        from scnn.metrics import Metrics
        from scnn.models import ConvexReLU
        from scnn.optimize import optimize_model
        from scnn.regularizers import NeuronGL1
        from scnn.solvers import AL
    except Exception:  # not installed
        return None
    Xb = prog.X.numpy()
    G = gates
    K = G.shape[1]
    if not np.array_equal(Xb @ G >= 0, prog.patterns.D1[:K, :, 0].numpy().T):
        return "gates do not reproduce the patterns"
    n = prog.n
    model = ConvexReLU(G, c=1)
    t = time.perf_counter()
    model, _ = optimize_model(model, AL(model, tol=1e-10, constraint_tol=1e-10), Metrics(),
                              Xb, prog.y.numpy()[:, None], regularizer=NeuronGL1(BETA / n),
                              return_convex=True, unitize_data=False, dtype="float64")
    seconds = time.perf_counter() - t
    # measured with pyscnn 0.0.10: the returned model carries gate vectors other than the ones
    # passed in, i.e. other patterns; then it did not solve this program and is not compared
    if not np.array_equal(model.compute_activations(Xb) > 0, Xb @ G > 0):
        return f"returned other gates ({seconds:.3g} s): not the same program"
    U, V = (np.asarray(p) for p in model.parameters)  # (c, p, d) each
    Q = np.zeros(prog.shape)
    # two_sided(): patterns 0..K-1 carry sign +1 (pyscnn's positive neurons), K..2K-1 sign -1
    Q[:K, 0] = U[0]
    Q[K:, 0] = -V[0]
    return seconds, prog.objective(torch.as_tensor(Q)), prog.constraint_violation(torch.as_tensor(Q))


def two_sided(prog: RestrictedProgram) -> RestrictedProgram:
    """The depth-2 program with every D present with both output signs (pyscnn's model)."""
    from lightning_convex import PatternSet

    pats = prog.patterns
    D1 = torch.cat([pats.D1, pats.D1])
    sig = torch.cat([torch.ones(prog.P, dtype=torch.int8), -torch.ones(prog.P, dtype=torch.int8)])
    both = PatternSet(D1, None, sig[:, None].clone(), sig, pats.bias)
    return RestrictedProgram(prog.X[:, : prog.in_features], prog.y, both, prog.beta)


def run(args):
    rows = []
    limit = args.limit
    osqp_opts = {} if args.osqp_max_iter is None else {"max_iter": args.osqp_max_iter}
    suites = [("three-layer", 3)] + ([] if args.quick else [("two-layer", 2)])
    suites = [s for s in suites if args.suite in ("all", s[0])]
    for suite, depth in suites:
        for name, prog, changed, gates in programs(args.quick, depth, args.only):
            if depth == 2:
                prog = two_sided(prog)
                changed = two_sided(changed)
            ref = solve(prog, solver="clarabel", tol=1e-10, time_limit=limit)
            ref_changed = solve(changed, solver="clarabel", tol=1e-10, time_limit=limit)
            times = {}
            errs = {}
            status = {}
            cold = None
            repeats = args.repeats if prog.n < 1000 else 1
            for _ in range(repeats):
                runs = [
                    ("osqp cold", prog, lambda: solve(prog, solver="osqp", time_limit=limit, **osqp_opts)),
                    ("osqp warm", changed, lambda: solve(changed, solver="osqp", warm_start=cold, **osqp_opts,
                                                         time_limit=limit)),
                    ("osqp cold*", changed, lambda: solve(changed, solver="osqp", time_limit=limit, **osqp_opts)),
                    ("clarabel", prog, lambda: solve(prog, solver="clarabel", time_limit=limit)),
                    ("cvxpy+SCS", prog, lambda: solve(prog, solver="cvxpy", cvxpy_solver="SCS",
                                                      time_limit_secs=limit)),
                    ("cvxpy+Clarabel", prog, lambda: solve(prog, solver="cvxpy", time_limit=limit)),
                ]
                for label, p, fn in runs:
                    if label == "osqp warm" and cold is None:
                        continue
                    sec, sol = timed(fn)
                    if label == "osqp cold":
                        cold = sol
                    opt = ref.objective if p is prog else ref_changed.objective
                    times.setdefault(label, []).append(sec)
                    errs[label] = (sol.objective - opt) / opt
                    status[label] = sol.status.value
                if "osqp warm" not in times and cold is not None:
                    sec, sol = timed(lambda: solve(changed, solver="osqp", warm_start=cold, time_limit=limit,
                                                **osqp_opts))
                    times.setdefault("osqp warm", []).append(sec)
                    errs["osqp warm"] = (sol.objective - ref_changed.objective) / ref_changed.objective
                    status["osqp warm"] = sol.status.value
            if depth == 2:
                out = pyscnn_solve(prog, gates)
                if isinstance(out, tuple):
                    times["pyscnn"] = [out[0]]
                    errs["pyscnn"] = (out[1] - ref.objective) / ref.objective
                    status["pyscnn"] = f"viol {out[2]:.1e}"
                elif isinstance(out, str):
                    status["pyscnn"] = out
            row = dict(suite=suite, name=name, n=prog.n, d=prog.d, P=prog.P,
                       times={k: statistics.median(v) for k, v in times.items()}, errs=errs,
                       status=status)
            rows.append(row)
            print(format_row(row), flush=True)
    return rows


COLUMNS = ["osqp cold", "osqp warm", "osqp cold*", "clarabel", "cvxpy+SCS", "cvxpy+Clarabel", "pyscnn"]


def format_row(row):
    cells = []
    for c in COLUMNS:
        if c in row["times"]:
            st = row["status"].get(c, "")
            mark = "" if st in ("optimal", "") or st.startswith("viol") else f" ({st})"
            cells.append(f"{row['times'][c]:.3g} s / {row['errs'][c]:+.1e}{mark}")
        elif c in row["status"]:
            cells.append(row["status"][c])
        else:
            cells.append("-")
    return f"| {row['suite']} | {row['name']} | {row['n']} | {row['d']} | {row['P']} | " + " | ".join(cells) + " |"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="UCI and one small synthetic program")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats (n < 1000)")
    ap.add_argument("--limit", type=float, default=600.0, help="time limit per solve, seconds")
    ap.add_argument("--osqp-max-iter", type=int, default=None, help="max_iter of the osqp solves (default: the backend's)")
    ap.add_argument("--suite", default="all", choices=["all", "three-layer", "two-layer"])
    ap.add_argument("--only", default=None, help="only the programs whose name contains this")
    ap.add_argument("--out", default=None, help="also write the table to this file")
    args = ap.parse_args()
    header = ("| suite | program | n | d' | P | " + " | ".join(COLUMNS) + " |\n"
              + "|---" * (5 + len(COLUMNS)) + "|")
    print(f"# {platform.platform()} / python {platform.python_version()} / torch {torch.__version__}")
    print(header)
    rows = run(args)
    if args.out:
        Path(args.out).write_text(header + "\n" + "\n".join(format_row(r) for r in rows) + "\n")


if __name__ == "__main__":
    main()
