"""``lightning-convex reproduce figure4``: SGD stalls for small K; the convex optimum and hybrid
training do not (the paper's Figure 4).

Setting (paper): (n, d, m, beta, batch) = (5, 2, 3, 0.002, 5); labels from a random K = 5
teacher ParallelReLU. For d = 2 every hyperplane arrangement can be enumerated
(:mod:`lightning_convex.enumerate`), so the convex optimum p* over the exhaustive pattern set is
the GLOBAL optimum of the non-convex problem for any K at least the number of its nonzero
patterns (scope "global"); with ``--max-patterns`` below the exhaustive count the set falls back
to sampled patterns and the scope says so.

Methods, each from 5 seeds for K in (1, 2, 5, 10):
- ``sgd``: Adam (lr 1e-2) on the full batch of 5, ``steps`` steps.
- ``hybrid``: the same, with :func:`~lightning_convex.active_set_solve` (own patterns +
  sampled + search violators, to a fixed point) every ``hybrid_every`` steps and at the end.
- ``convex``: p*, one row.

Verdicts: ``relative_gap`` = (J - p*) / J against the global lower bound p*, and the
certificate search of MATH.md section 6 (``max_violation`` > 1 proves J is not globally optimal,
without enumeration). A run is "optimal" when its relative gap is below 1e-3.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from .. import ParallelReLU, RestrictedProgram, active_set_solve, certify, objective, sample_patterns, solve
from ..enumerate import enumerate_patterns
from .recording import CsvRows, pyplot

SETTING = dict(n=5, d=2, m=3, beta=0.002, batch=5, teacher_K=5)
RUN_COLUMNS = ["method", "K", "seed", "seconds", "objective", "lower_bound", "relative_gap",
               "max_violation", "verdict", "scope"]


def make_data(seed: int = 0):
    """X (5, 2) Gaussian; y from a random K = 5, m = 3 teacher (float64)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(SETTING["n"], SETTING["d"], generator=g, dtype=torch.float64)
    torch.manual_seed(seed + 12345)
    teacher = ParallelReLU(SETTING["d"], SETTING["m"], SETTING["teacher_K"]).double()
    with torch.no_grad():
        y = teacher(X)
    return X, y


def convex_optimum(X, y, beta, max_patterns=200_000, sampled=5000, seed=0):
    """(solution, scope): the exhaustive set when it has at most ``max_patterns`` patterns."""
    try:
        S = enumerate_patterns(X, SETTING["m"], max_patterns=max_patterns)
        scope = "global"
    except ValueError:
        S = sample_patterns(X, sampled, SETTING["m"], generator=torch.Generator().manual_seed(seed))
        scope = f"{len(S)} sampled patterns"
    start = time.perf_counter()
    solution = solve(RestrictedProgram(X, y, S, beta), solver="clarabel")
    return solution, scope, time.perf_counter() - start


def train(X, y, beta, K, seed, steps, hybrid_every=None, lr=1e-2):
    """One run; returns (network, trajectory [(seconds, J)], seconds)."""
    torch.manual_seed(seed)
    net = ParallelReLU(X.shape[1], SETTING["m"], K).double()
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    trajectory = [(0.0, objective(net, X, y, beta))]
    start = time.perf_counter()
    for step in range(1, steps + 1):
        optimizer.zero_grad()
        (0.5 * (net(X) - y).square().sum() + beta * net.regularizer()).backward()
        optimizer.step()
        if hybrid_every and (step % hybrid_every == 0 or step == steps):
            result = active_set_solve(net, X, y, beta, solver="clarabel", extra_patterns=20,
                                      search=32, generator=generator)
            if result.changed:
                optimizer = torch.optim.Adam(net.parameters(), lr=lr)  # stale moments would undo it
        if step % 25 == 0 or step == steps:
            trajectory.append((time.perf_counter() - start, objective(net, X, y, beta)))
    return net, trajectory, time.perf_counter() - start


def plot(curves, p_star, scope, path: Path) -> Path:
    plt = pyplot()
    Ks = sorted({k for (_, k, _) in curves})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    cmap = plt.get_cmap("viridis")
    for ax, method in zip(axes, ("sgd", "hybrid")):
        for i, K in enumerate(Ks):
            color = cmap(i / max(1, len(Ks) - 1))
            for j, ((m, k, seed), traj) in enumerate(sorted(curves.items())):
                if m != method or k != K:
                    continue
                t, J = zip(*traj)
                t = [max(x, 1e-3) for x in t]  # the start (t = 0) drawn at 1 ms on the log axis
                ax.plot(t, J, color=color, lw=1, alpha=0.8, label=f"K={K}" if seed == 0 else None)
        ax.axhline(p_star, color="k", ls="--", lw=1, label=f"convex optimum ({scope})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("wall time (s)")
        ax.set_title(method)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("J = 1/2||f(X)-y||^2 + beta R")
    fig.suptitle("Figure 4: (n, d, m, beta) = (5, 2, 3, 0.002), 5 seeds per K")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(out="figure4", Ks=(1, 2, 5, 10), seeds=5, steps=3000, hybrid_every=500, data_seed=0,
         max_patterns=200_000, sampled=5000) -> int:
    out = Path(out)
    runs_csv = CsvRows(out / "runs.csv", RUN_COLUMNS)  # fails now, before any training, when unwritable
    beta = SETTING["beta"]
    X, y = make_data(data_seed)
    solution, scope, convex_seconds = convex_optimum(X, y, beta, max_patterns=max_patterns,
                                                     sampled=sampled)
    p_star = solution.objective
    print(f"convex optimum p* = {p_star:.6g} over {solution.program.P} patterns ({scope}, "
          f"{solution.status}, {convex_seconds:.1f} s)", flush=True)
    # K is left empty: p* holds for every K at least the size of a sparsest optimal support
    rows = [{"method": "convex", "K": "", "seed": "",
             "seconds": convex_seconds, "objective": p_star, "lower_bound": p_star,
             "relative_gap": 0.0, "max_violation": "", "verdict": "optimal", "scope": scope}]
    runs_csv.append(rows[0])
    curves = {}
    for method in ("sgd", "hybrid"):
        for K in Ks:
            for seed in range(seeds):
                net, traj, seconds = train(X, y, beta, K, seed, steps,
                                           hybrid_every if method == "hybrid" else None)
                J = objective(net, X, y, beta)
                cert = certify(net, X, y, beta, search=64, generator=torch.Generator().manual_seed(seed))
                gap = (J - p_star) / J
                verdict = "optimal" if gap <= 1e-3 else "stalled"
                if scope != "global":
                    verdict += " (vs sampled set)"
                rows.append({"method": method, "K": K, "seed": seed, "seconds": seconds,
                             "objective": J, "lower_bound": p_star, "relative_gap": gap,
                             "max_violation": cert.max_violation, "verdict": verdict, "scope": scope})
                runs_csv.append(rows[-1])
                curves[(method, K, seed)] = traj
                print(f"{method:<6} K={K:<3} seed={seed} J={J:.6g} gap={gap:8.2e} "
                      f"search max r.f/beta={cert.max_violation:6.3f} -> {verdict}", flush=True)
    runs_csv.close()
    plot(curves, p_star, scope, out / "figure4.png")
    for method in ("sgd", "hybrid"):
        summary = []
        for K in Ks:
            runs = [r for r in rows if r["method"] == method and r["K"] == K]
            summary.append(f"K={K}: {sum(r['verdict'].startswith('optimal') for r in runs)}/{len(runs)} optimal")
        print(f"{method}: " + ", ".join(summary))
    print(f"wrote {out / 'runs.csv'} and {out / 'figure4.png'}")
    return 0
