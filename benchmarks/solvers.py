"""Restricted-solve benchmark (issue 3): OSQP backend against Clarabel, CVXPY+SCS, CVXPY+Clarabel.

Programs come from networks briefly trained with Adam (path norm, beta = 0.1, K = 10, m = 7,
bias column): the six UCI sets of ../shared/data/uci (their training split) and synthetic data
with n in {500, 2000}, d in {10, 30}; on two-layer UCI programs the pyscnn package (augmented
Lagrangian) runs too when it is installed, at its defaults ("pyscnn") and at
tol = constraint_tol = 1e-10 ("pyscnn tight"), compared on the same pattern SET
(:func:`pyscnn_variable`). pyscnn 0.0.10 declares torchvision, which breaks the
pytorch_lightning import here; what it needs installs without it:
``pip install --no-deps pyscnn==0.0.10 linalg_backends opt_einsum``. For every program the solvers run interleaved
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


#: pyscnn's augmented Lagrangian: at its defaults, and at tight tolerances
PYSCNN_RUNS = {"pyscnn": {}, "pyscnn tight": {"tol": 1e-10, "constraint_tol": 1e-10}}


def pyscnn_variable(prog: RestrictedProgram, gates: np.ndarray, U: np.ndarray, V: np.ndarray):
    """Our Q (P, 1, d') for pyscnn's solution of the two-sided depth-2 program ``prog``, or a
    string saying why the programs differ.

    pyscnn builds its program from the gates it is given but keeps each DISTINCT nonzero
    pattern once, in np.unique's order (activations.compute_activation_patterns: sorted columns,
    all-zero one dropped), so the returned model's gates ``gates`` (d', b) differ from the ones
    passed in, in order and number. Our program may hold a pattern several times and the
    all-zero pattern; neither changes its optimum (a duplicate's q moves onto the first copy
    without raising the norm sum, ||a|| + ||b|| >= ||a + b||, and the zero pattern predicts
    nothing). So the programs are the same when the pattern SETS agree, and pyscnn's weights go to
    the first copy of each pattern: U_i (positive neuron) to sign +1, -V_i to sign -1.
    """
    D_ours = prog.patterns.D1[:, :, 0].numpy().astype(bool)  # (P, n)
    sig = prog.patterns.sig.numpy()
    D_theirs = (prog.features.numpy() @ gates > 0).T  # pyscnn's D = 1[X g > 0]
    ours = {D.tobytes() for D in D_ours if D.any()}
    theirs = {D.tobytes() for D in D_theirs}
    if ours != theirs:
        return f"pattern sets differ ({len(ours - theirs)} only ours, {len(theirs - ours)} only pyscnn's)"
    first = {}
    for p in range(prog.P):
        first.setdefault((D_ours[p].tobytes(), int(sig[p])), p)
    Q = np.zeros(prog.shape)
    for i, D in enumerate(D_theirs):
        Q[first[(D.tobytes(), 1)], 0] += U[i]
        Q[first[(D.tobytes(), -1)], 0] -= V[i]
    return Q


def pyscnn_solve(prog: RestrictedProgram, gates: np.ndarray, **al_options):
    """(seconds, objective, cone violation) of pyscnn's ConvexReLU + augmented Lagrangian on the
    two-sided depth-2 program ``prog`` whose patterns the gates (d', K) generate; a string when
    the programs differ; None when pyscnn is not installed.

    pyscnn's ConvexReLU with gates G carries, per gate, a positive and a negative neuron with the
    same D: our depth-2 program whose pattern set holds each D with both signs. Its loss is
    ||.||^2 / (2n), so lambda = beta / n gives our objective divided by n; the objective reported
    is ours, recomputed from the mapped Q (:func:`pyscnn_variable`).
    """
    try:
        from scnn.metrics import Metrics
        from scnn.models import ConvexReLU
        from scnn.optimize import optimize_model
        from scnn.regularizers import NeuronGL1
        from scnn.solvers import AL
    except ImportError:  # not installed
        return None
    Xb = prog.features.numpy()
    t = time.perf_counter()
    model = ConvexReLU(gates, c=1)
    model, _ = optimize_model(model, AL(model, **al_options), Metrics(), Xb, prog.y.numpy()[:, None],
                              regularizer=NeuronGL1(BETA / prog.n), return_convex=True, unitize_data=False,
                              dtype="float64")
    seconds = time.perf_counter() - t
    U, V = (np.asarray(p)[0] for p in model.parameters)  # (p, d') each
    Q = pyscnn_variable(prog, np.asarray(model.G), U, V)
    if isinstance(Q, str):
        return f"{Q} ({seconds:.3g} s)"
    Q = torch.as_tensor(Q)
    return seconds, prog.objective(Q), prog.constraint_violation(Q)


def two_sided(prog: RestrictedProgram) -> RestrictedProgram:
    """The depth-2 program with every D present with both output signs (pyscnn's model)."""
    from lightning_convex import PatternSet

    pats = prog.patterns
    D1 = torch.cat([pats.D1, pats.D1])
    sig = torch.cat([torch.ones(prog.P, dtype=torch.int8), -torch.ones(prog.P, dtype=torch.int8)])
    both = PatternSet(D1, None, sig[:, None].clone(), sig, pats.bias)
    return RestrictedProgram(prog.rows.X, prog.y, both, prog.beta)


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
            for label, options in (PYSCNN_RUNS.items() if depth == 2 else ()):
                out = pyscnn_solve(prog, gates, **options)
                if isinstance(out, tuple):
                    times[label] = [out[0]]
                    errs[label] = (out[1] - ref.objective) / ref.objective
                    status[label] = f"viol {out[2]:.1e}"
                elif isinstance(out, str):
                    status[label] = out
            row = dict(suite=suite, name=name, n=prog.n, d=prog.d, P=prog.P,
                       times={k: statistics.median(v) for k, v in times.items()}, errs=errs,
                       status=status)
            rows.append(row)
            print(format_row(row), flush=True)
    return rows


COLUMNS = ["osqp cold", "osqp warm", "osqp cold*", "clarabel", "cvxpy+SCS", "cvxpy+Clarabel", *PYSCNN_RUNS]


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
