"""The ``"exact"`` method: the restricted program solved by the exact reference, its dual used.

At the optimum of the restricted program over S, the residual v* = y - A Q* and the solver's
cone multipliers mu* make B_p(v*, mu*) <= beta for every pattern (to the solver's tolerance), so
the section-5 bound is OPT(S) itself and the gap is J(theta) - OPT(S) to solver precision: the
best certificate there is. On small programs the interior-point solve (Clarabel, the registry's
exact backend) costs less than a good multiplier fit, so :func:`~.certificate.certify` uses it
there. Validity does not rest on the solve: the bound is recomputed from (v*, mu*) in float64
like any other candidate (:mod:`.candidates`), so an inaccurate solve only gives a weaker bound.

Rows split over processes (DDP) are gathered in global row order, every process solves the same
program (a deterministic solver on identical data gives identical results), and each keeps the
residual and multipliers of its own rows.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from ..patterns import PatternSet
from ..program import RestrictedProgram
from ..rows import Rows, RowSync
from ..solvers import solve

#: the registry's exact backend
EXACT_SOLVER = "clarabel"
#: programs with at most this many explicit cone-row entries P n (m + 1) d' are solved exactly
#: whatever the time budget (the solve then takes a fraction of a second; BENCHMARKS.md,
#: "Certificates"), ...
ALWAYS_EXACT_ENTRIES = 100_000
#: ... and up to this many when no time limit is given, or when the time the solve is expected
#: to take fits the budget
MAX_EXACT_ENTRIES = 1_000_000
#: the expected seconds of an exact solve per cone-row entry (an upper estimate from the
#: solves timed for BENCHMARKS.md, "Certificates")
SECONDS_PER_ENTRY = 2e-5


def program_entries(P: int, n_total: int, m: int, depth: int, d: int) -> int:
    """P n (m + 1) d' (P n m d' for depth 2): what building the exact solver's cone rows costs."""
    return P * n_total * (m + (1 if depth == 3 else 0)) * d


def exact_fits(entries: int, seconds_left: Optional[float]) -> bool:
    """Whether ``"auto"`` solves exactly: always when tiny, when no budget is set and the program
    is small, or when the expected time of the solve fits the seconds left."""
    if entries <= ALWAYS_EXACT_ENTRIES:
        return True
    if entries > MAX_EXACT_ENTRIES:
        return False
    return seconds_left is None or SECONDS_PER_ENTRY * entries <= seconds_left


def gathered_program(program: RestrictedProgram, sync: RowSync):
    """(the program on every process's rows in global order, positions (n_local,) of this
    process's rows in it); the program itself on one process."""
    n = program.n
    if not sync.distributed:
        return program, torch.arange(n, device=program.device)
    ids = sync.row_ids(n, program.device)
    all_ids = sync.cat(ids)
    order = torch.argsort(all_ids)
    S = program.patterns
    take = lambda t: sync.cat(t)[order]  # noqa: E731 - row-major tensors, gathered in id order
    D1 = take(S.D1.permute(1, 0, 2).contiguous()).permute(1, 0, 2).contiguous()
    D2 = None if S.D2 is None else take(S.D2.T.contiguous()).T.contiguous()
    patterns = PatternSet(D1, D2, S.s, S.sig, S.bias)
    rows = Rows(take(program.features), take(program.y), program.rows.bias)
    full = RestrictedProgram(rows, None, patterns, program.beta, dtype=program.dtype)
    return full, torch.searchsorted(all_ids[order], ids)


def exact_dual(program: RestrictedProgram, sync: RowSync, time_limit: Optional[float] = None):
    """Solve ``program`` (over every process's rows) exactly; returns (the solver's residual on
    this process's rows (n_local,), its multipliers (mu1 (P, n_local, m), mu2 or None) or None,
    info)."""
    full, mine = gathered_program(program, sync)
    limit = math.inf if time_limit is None else max(float(time_limit), 1e-3)
    solution = solve(full, solver=EXACT_SOLVER, time_limit=limit)
    info = {"exact_status": str(solution.status), "exact_seconds": solution.seconds}
    residual = solution.residual[mine]
    multipliers = None
    if solution.multipliers is not None:
        mu1, mu2 = solution.multipliers
        multipliers = (mu1[:, mine], None if mu2 is None else mu2[:, mine])
    return residual, multipliers, info
