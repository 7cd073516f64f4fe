"""Active-set rounds: solve the restricted program on a network's own patterns, rebuild, repeat.

Remark 3 of the paper reads SGD as an active-set method on the convex program of MATH.md
section 3; :func:`active_set_solve` makes that explicit. One round, for a network theta with
objective J(theta) (MATH.md section 1, sum form) on data (X, y):

1. read the network's own pattern set S(theta) = ``patterns_of(net, rows)`` (duplicates and patterns
   with an empty prediction mask removed); in the first round only, add ``extra_patterns``
   sampled patterns (Remark 3) and the violating patterns of a certificate search (``search``);
2. solve the restricted program over S, warm-started from the network's own convex variable
   q_kj = w3_k w2_kj W1_k[:, j] (a feasible point: theta lies in its own cones);
3. if more than K patterns come out nonzero, keep the K largest by t_p = sum_j ||q_pj|| and
   solve again over those (and, should that be no better than theta, over S(theta) alone);
4. rebuild the solution into the network's K branches (MATH.md section 4).

Why rounds: the rebuilt network sits on cone boundaries (rows with x_i . u_j = 0), so re-reading
its patterns gives a set S' != S whose optimum can be far lower (MATH.md section 8). The rounds
stop at a fixed point:

* ``"converged"``: the solve over the network's own set found OPT(S) >= (1 - rtol) J(theta): the
  network is already optimal over its own patterns (to rtol). That solution is NOT loaded, so
  the network keeps exactly the patterns that were certified;
* ``"repeated"``: the network's own set was solved in an earlier round; since J only decreases,
  J(theta) = OPT(S) then;
* otherwise ``"max_rounds"`` (no fixed point claimed), or ``"failed"`` / ``"worse"`` (see below).

Never raises the objective: a solve whose status is not optimal, or whose rebuilt network is not
below J(theta), leaves the network exactly as it was before that round and says so in
:attr:`ActiveSetResult.messages` (and a warning).

Spare branches (policy ``spare=``). Branches the solution does not use become exactly zero, and an
exactly-zero branch never revives under gradient descent (every partial derivative of
w3 * relu(relu(X W1) w2) with two zero factors is zero). ``spare="zero"`` (the default) keeps them
off: the returned network is then the restricted optimum itself, a fixed point a certificate can
check, and a later call refills spare branches through the solve whenever a sampled
(``extra_patterns``) or violating (``search``) pattern earns a place. ``spare="reseed"`` re-seeds
each spare branch from random branches (Remark 3 sampling): among ``reseed_candidates`` Gaussian
branches the one best correlated with the residual r = y - f(X) is written at path norm t, adding
t * g to f (g its output at unit path norm) and changing J by exactly t (beta - r.g) +
t^2 ||g||^2 / 2. A candidate with r.g > beta is a descent direction (MATH.md section 6) and gets
the step that minimises this; any other gets the t that spends at most ``spare_tol * J`` in total
-- and never more than half of what the solves gained, so the returned J stays at or below the
input J. A re-seeded network is no longer a fixed point of its own pattern set (the new branches
bring new patterns): SGD is meant to grow the useful ones. Measured in hybrid training on the six
Table-1 sets it reached no lower fixed points than ``"zero"`` (BENCHMARKS.md), hence the default.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import List, Optional

import torch

from ._checks import check_beta, check_int
from .certificates import certify
from .mapping import branch_path_norms, branch_variables, rebuild_branches
from .model import ParallelReLU, branch_outputs, network_rows
from .objective import objective, predict
from .patterns import PatternSet, draw_branches, patterns_of, private_generator, sample_patterns, union
from .program import RestrictedProgram
from .reconstruct import load_solution_, network_variable
from .solution import Solution, SolveStatus
from .solvers import backend, choose_solver, solve

SPARE_POLICIES = ("zero", "reseed")
#: A solver objective above (1 + this) J(theta) over a set holding the network's own patterns
#: contradicts feasibility of the network (float64 rounding and solver tolerances stay far below).
CONSISTENCY_RTOL = 1e-6
#: Patterns whose t_p is at most this fraction of the largest are solver residue (an interior point
#: leaves ~tol-sized values on groups that are zero at the optimum); they are dropped when that
#: does not raise the objective beyond rounding, so they do not occupy branches.
ZERO_PATTERN_RTOL = 1e-6
#: Stops a looser tolerance cannot help (the budget is spent).
RETRY_NEVER = (SolveStatus.TIME_LIMIT, SolveStatus.USER_LIMIT)
STOP_REASONS = ("converged", "repeated", "max_rounds", "failed", "worse")


@dataclass
class ActiveSetResult:
    """What :func:`active_set_solve` did.

    Attributes:
        objective_before: J(theta) of the network given, float64, sum form.
        objective_after: J(theta) of the network returned (after any spare-branch re-seeding).
        objectives: J after each round that changed the network; ``objectives[0]`` is the input J.
        solver_objectives: the solver's objective for every solve, in order.
        statuses: the solver status (a string) of every solve, in order.
        rounds: rounds started (each reads the network's patterns once and solves at least once,
            unless its pattern set repeated).
        solves: solves run (a round solves again when more than K patterns come out nonzero).
        solver_seconds: total wall time inside the solver backends.
        seconds: total wall time of the call.
        changed: whether the network's parameters were written.
        converged: whether the rounds stopped at a fixed point (``stop_reason`` "converged" or
            "repeated"): then J(theta) <= OPT(S(theta)) / (1 - rtol) before any re-seeding.
        stop_reason: one of ``"converged"``, ``"repeated"``, ``"max_rounds"``, ``"failed"``
            (a solve was not optimal), ``"worse"`` (a rebuilt network was not below J).
        patterns: the pattern set of the last solve whose optimum the network equals (loaded) or
            certifies (``"converged"``); ``None`` when no solve succeeded.
        active: nonzero branches after the rounds (before re-seeding).
        reseeded: spare branches re-seeded (``spare="reseed"``).
        messages: human-readable notes (failed or rejected solves, truncations).
    """

    objective_before: float
    objective_after: float
    objectives: List[float] = field(default_factory=list)
    solver_objectives: List[float] = field(default_factory=list)
    statuses: List[str] = field(default_factory=list)
    rounds: int = 0
    solves: int = 0
    solver_seconds: float = 0.0
    seconds: float = 0.0
    changed: bool = False
    converged: bool = False
    stop_reason: str = "max_rounds"
    patterns: Optional[PatternSet] = None
    active: int = 0
    reseeded: int = 0
    messages: List[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        """The last solve's status (``"none"`` if nothing was solved)."""
        return self.statuses[-1] if self.statuses else "none"

    @property
    def improvement(self) -> float:
        """objective_before - objective_after (>= 0)."""
        return self.objective_before - self.objective_after

    def __repr__(self) -> str:
        return (
            f"ActiveSetResult(J {self.objective_before:.10g} -> {self.objective_after:.10g}, "
            f"rounds={self.rounds}, solves={self.solves}, stop={self.stop_reason!r}, "
            f"converged={self.converged}, active={self.active}, reseeded={self.reseeded}, "
            f"solver_seconds={self.solver_seconds:.3g})"
        )


def without_numerical_zeros(solution: Solution) -> Solution:
    """The solution with residue patterns (t_p <= ZERO_PATTERN_RTOL max t) set to exactly zero, when
    the objective stays within 1e-9 (relative) of the solver's; otherwise the solution itself."""
    t = solution.pattern_norms()
    small = (t > 0) & (t <= ZERO_PATTERN_RTOL * t.max())
    if not bool(small.any()):
        return solution
    program = solution.program
    Q = solution.Q.clone()
    Q[small] = 0
    if program.objective(Q) > solution.objective + 1e-9 * abs(solution.objective):
        return solution
    return Solution.from_variable(program, Q, status=solution.status, seconds=solution.seconds,
                                  iterations=solution.iterations, solver=solution.solver,
                                  multipliers=solution.multipliers,
                                  info={**solution.info, "zeroed_patterns": int(small.sum())})


def _run_solver(program: RestrictedProgram, solver: str, warm_start, options: dict) -> Solution:
    name = choose_solver(program)[0] if solver == "auto" else solver
    if warm_start is not None and backend(name).capabilities.warm_start:
        options = dict(options, warm_start=warm_start)
    return solve(program, solver=solver, **options)


def _copy_parameters_(dst: ParallelReLU, src: ParallelReLU) -> None:
    with torch.no_grad():
        for name, param in dst.named_parameters():
            param.copy_(getattr(src, name).detach())


def spare_branches(net: ParallelReLU) -> torch.Tensor:
    """bool (K,): branches whose parameters are all exactly zero (they never revive under SGD)."""
    zero = (net.W1.detach() == 0).flatten(1).all(dim=1) & (net.w3.detach() == 0)
    if net.w2 is not None:
        zero &= (net.w2.detach() == 0).all(dim=1)
    return zero


@torch.no_grad()
def reseed_spare_(net: ParallelReLU, X, y, beta, budget: float, generator=None,
                  candidates: int = 64) -> int:
    """Re-seed the network's exactly-zero branches from random branches (see the module notes).

    Each spare branch in turn gets, among ``candidates`` Gaussian branches, the one with the
    largest |r . g| (r the current residual, g the branch output at unit path norm, its sign
    chosen so that r . g >= 0), at the path norm t that minimises the exact change
    t (beta - r.g) + t^2 ||g||^2 / 2 when r.g > beta, else the t that spends an equal share of
    ``budget`` (>= 0, in J units). Returns the number of branches written. J rises by at most
    ``budget`` in exact arithmetic; the caller checks the stored network.
    """
    spare = torch.nonzero(spare_branches(net)).flatten().tolist()
    if not spare or candidates < 1:
        return 0
    beta = check_beta(beta)
    rows = network_rows(net, X, y)
    r = rows.y - predict(net, rows)
    W1, w2, _ = draw_branches(candidates, net.feature_dim, net.hidden, net.depth, generator, rows.device,
                              output_weights=False)
    ones = torch.ones(candidates, dtype=torch.float64, device=rows.device)
    out = branch_outputs(rows.features, W1, w2, ones)
    # q_cj = w2_cj W1_c[:, j] (w3 = +1): path norm T_c = sum_j ||q_cj||, unit-path-norm output g_c
    q = branch_variables(W1, w2, ones)  # (C, m, d')
    T = branch_path_norms(W1, w2, ones)
    usable = (T > 0) & (out.abs().sum(dim=1) > 0)
    g = out / torch.where(T > 0, T, torch.ones_like(T))[:, None]
    written = 0
    remaining = float(max(budget, 0.0))
    for position, k in enumerate(spare):
        corr = g @ r
        score = torch.where(usable, corr.abs(), torch.full_like(corr, -1.0))
        best = int(torch.argmax(score))
        if float(score[best]) < 0:
            break
        c = float(score[best])
        sig = 1.0 if float(corr[best]) >= 0 else -1.0
        gg = float(g[best].square().sum())
        if c > beta:
            t = (c - beta) / gg
        else:
            share = remaining / (len(spare) - position)
            if share <= 0:
                usable[best] = False
                continue
            a = beta - c
            t = 2.0 * share / (a + math.sqrt(a * a + 2.0 * gg * share))  # root of a t + gg t^2/2 = share
            remaining -= a * t + 0.5 * gg * t * t
        # q_j = w3 w2_j W1_j with w3 = sig t / T; cone signs s_j = sig sign(w2_j) (sign(0) = +1)
        Qk = (sig * t / float(T[best])) * q[best]
        s = sig * (torch.where(w2[best] >= 0, 1.0, -1.0).to(Qk) if w2 is not None else Qk.new_ones(1))
        net.write_branches_([k], *rebuild_branches(Qk[None], s[None], Qk.new_tensor([sig]), net.depth,
                                                   net.regularization))
        r = r - sig * t * g[best]
        usable[best] = False
        written += 1
    return written


def active_set_solve(
    net: ParallelReLU,
    X,
    y,
    beta,
    solver: str = "auto",
    extra_patterns: int = 0,
    search: int = 0,
    max_rounds: int = 100,
    rtol: float = 1e-7,
    generator: Optional[torch.Generator] = None,
    spare: str = "zero",
    spare_tol: float = 1e-6,
    reseed_candidates: int = 64,
    solver_options: Optional[dict] = None,
    retries: int = 2,
    warn: bool = True,
) -> ActiveSetResult:
    """Move ``net`` in place to a fixed point of the active-set rounds (see the module notes).

    Args:
        net: the :class:`ParallelReLU` (K branches); rebuilt in place, never to a higher J.
        X, y: the full training set (n, d) and (n,); J is the sum form of MATH.md section 1.
        beta: the regularization weight.
        solver: a backend name for :func:`lightning_convex.solve` (``"auto"``, ``"clarabel"``, ...).
        extra_patterns: sampled patterns (Remark 3) added to the first round's set.
        search: size of the certificate search (``lightning_convex.certify(..., search=N)``) whose
            violating patterns join the first round's set; 0 for none.
        max_rounds: the most rounds (solve -> rebuild -> re-read patterns).
        rtol: stop when OPT(S(theta)) >= (1 - rtol) J(theta).
        generator: a ``torch.Generator`` for sampling (extra patterns, search, re-seeding).
        spare: ``"zero"`` (spare branches stay exactly zero) or ``"reseed"``.
        spare_tol: the most re-seeding may add to J, relative to J (``spare="reseed"``).
        reseed_candidates: random branches drawn per re-seeding.
        solver_options: extra keyword arguments for the solver (``tol``, ``max_iter``, ...).
        retries: after a non-optimal status, solve again up to this many times, each at 10x the
            tolerance the previous attempt used (a non-optimal solution is never used).
        warn: emit a ``UserWarning`` for a failed or rejected solve (the result says so anyway).

    Returns:
        An :class:`ActiveSetResult`.
    """
    if not isinstance(net, ParallelReLU):
        raise TypeError(f"net must be a ParallelReLU, got {type(net).__name__}")
    beta = check_beta(beta)
    if spare not in SPARE_POLICIES:
        raise ValueError(f"spare must be one of {SPARE_POLICIES}, got {spare!r}")
    for name, value in (("extra_patterns", extra_patterns), ("search", search),
                        ("reseed_candidates", reseed_candidates), ("retries", retries)):
        check_int(name, value)
    check_int("max_rounds", max_rounds, minimum=1)
    if not (0 <= rtol < 1):
        raise ValueError(f"rtol must be in [0, 1), got {rtol!r}")
    if not (spare_tol >= 0 and math.isfinite(spare_tol)):
        raise ValueError(f"spare_tol must be a non-negative number, got {spare_tol!r}")
    net.check_finite_()
    device = net.W1.device
    rows = network_rows(net, X, y)  # validated once: everything below reads these rows
    generator = private_generator(generator)  # one stream for sampling, search and re-seeding
    options = dict(solver_options or {})

    start = time.perf_counter()
    J = objective(net, rows, beta=beta)
    result = ActiveSetResult(objective_before=J, objective_after=J, objectives=[J])
    seen = set()

    def note(message: str, warning: bool = False) -> None:
        result.messages.append(message)
        if warning and warn:
            warnings.warn(message, stacklevel=3)

    def settled(verdict: str, over: PatternSet) -> bool:
        """Record a final verdict; True when the rounds stop. "converged": already optimal over
        a set that holds the network's own patterns, a fixed point; "inconsistent": the solve
        claims a worse optimum than the network (which is feasible for it)."""
        if verdict == "converged":
            result.converged, result.stop_reason, result.patterns = True, "converged", over
            return True
        if verdict == "inconsistent":
            result.stop_reason = "worse"
            return True
        return False

    def attempt(patterns: PatternSet, warm: torch.Tensor):
        """(optimal solution or None, last solution): one solve, and on a non-optimal status up to
        ``retries`` more, each at 10x the tolerance the previous attempt used (the backend's own
        default first, as its Solution reports it). Interior points can stop short ("almost
        solved") at a tight default on programs they solve at a looser one to the same objective.
        Backends without a ``tol`` option, and stops at a time limit, are not retried."""
        program = RestrictedProgram(rows, None, patterns, beta)
        opts = dict(options)
        for attempt_index in range(retries + 1):
            solution = _run_solver(program, solver, warm, opts)
            result.solves += 1
            result.solver_seconds += solution.seconds
            result.statuses.append(str(solution.status))
            result.solver_objectives.append(float(solution.objective))
            if solution.is_optimal:
                solution = without_numerical_zeros(solution)
                return solution, solution
            used = solution.info.get("tol")
            at = f" at tol {used:.0e}" if isinstance(used, float) else ""
            note(f"the {solution.solver} solve over {len(patterns)} patterns ended with status "
                 f"{solution.status}{at}; not used")
            if not isinstance(used, float) or solution.status in RETRY_NEVER:
                break
            opts["tol"] = used * 10.0
        return None, solution

    def judge(solution: Solution, J: float, round_index: int) -> str:
        """"improves", "converged" (OPT(S) >= (1 - rtol) J) or "inconsistent": an objective above
        J(theta) although the network is a feasible point of the set (it holds the network's own
        patterns), so the solver stopped short of the optimum whatever its status says."""
        if solution.objective > J * (1.0 + CONSISTENCY_RTOL):
            note(f"round {round_index + 1}: the {solution.solver} solve reported {solution.status} at "
                 f"objective {solution.objective:.10g}, above J = {J:.10g} of the network, which is "
                 "feasible for the set: not optimal, not used; the network is left as it was",
                 warning=True)
            return "inconsistent"
        if solution.objective >= (1.0 - rtol) * J:
            return "converged"
        return "improves"

    def rebuild(solution: Solution):
        candidate = copy.deepcopy(net)
        load_solution_(candidate, solution)
        return candidate, objective(candidate, rows, beta=beta)

    for round_index in range(max_rounds):
        own = patterns_of(net, rows)
        own = own.select(~own.is_degenerate()).unique()
        if len(own) == 0:
            # every branch is silent on the data: try the cone of an exactly-zero branch
            # (all rows active, signs +1), so that the program is not empty
            silent = copy.deepcopy(net)
            with torch.no_grad():
                for param in silent.parameters():
                    param.zero_()
            own = patterns_of(silent, rows).select([0])
        key = own.key()
        if key in seen:
            result.converged, result.stop_reason = True, "repeated"
            break
        seen.add(key)
        result.rounds += 1
        patterns = own
        if round_index == 0 and (extra_patterns > 0 or search > 0):
            extras = []
            if extra_patterns > 0:
                extras.append(sample_patterns(rows, extra_patterns, net.hidden, generator=generator,
                                              depth=net.depth, bias=net.bias).to(device))
            if search > 0:
                found = certify(net, rows, None, beta, search=search, generator=generator).violating_patterns
                if found is not None and len(found):
                    extras.append(found.to(device))
            extras = [e for e in extras if len(e)]
            if extras:
                patterns = union(own, *extras)

        solution, raw = attempt(patterns, network_variable(net, rows, patterns))
        if solution is None:
            result.stop_reason = "failed"
            note(f"round {round_index + 1}: the {raw.solver} solve ended with status {raw.status} "
                 f"over {len(patterns)} patterns; the network is left as it was (J = {J:.10g})",
                 warning=True)
            break
        if settled(judge(solution, J, round_index), patterns):
            break
        used = patterns
        nonzero = int(solution.active_patterns().sum())
        if nonzero > net.branches:
            # only with extra patterns: the network's own set has at most K patterns
            note(f"round {round_index + 1}: {nonzero} patterns nonzero for K = {net.branches} "
                 "branches; solving again over the K largest by t_p")
            top = torch.sort(torch.argsort(solution.pattern_norms(), descending=True)[: net.branches]).values
            used = patterns.select(top)
            solution, raw = attempt(used, solution.Q[top])
            if solution is None or solution.objective >= (1.0 - rtol) * J:
                note(f"round {round_index + 1}: the K largest patterns do not improve on the "
                     "network; solving over its own patterns")
                used = own
                solution, raw = attempt(own, network_variable(net, rows, own))
                if solution is None:
                    result.stop_reason = "failed"
                    note(f"round {round_index + 1}: the {raw.solver} solve ended with status "
                         f"{raw.status}; the network is left as it was (J = {J:.10g})", warning=True)
                    break
                if settled(judge(solution, J, round_index), own):
                    break
        candidate, J_candidate = rebuild(solution)
        if not J_candidate < J:
            result.stop_reason = "worse"
            note(f"round {round_index + 1}: the rebuilt network has J = {J_candidate:.10g}, not "
                 f"below {J:.10g} (solver objective {solution.objective:.10g}); the network is "
                 "left as it was", warning=True)
            break
        _copy_parameters_(net, candidate)
        J = J_candidate
        result.changed = True
        result.patterns = used
        result.objectives.append(J)
    else:
        result.stop_reason = "max_rounds"
        note(f"stopped after max_rounds = {max_rounds} rounds without reaching a fixed point")

    result.active = int((~spare_branches(net)).sum())
    if spare == "reseed":
        budget = min(spare_tol * J, 0.5 * (result.objective_before - J))
        backup = copy.deepcopy(net)
        count = reseed_spare_(net, rows, None, beta, budget, generator=generator, candidates=reseed_candidates)
        if count:
            J_reseeded = objective(net, rows, beta=beta)
            if J_reseeded <= max(result.objective_before, J) and J_reseeded <= J + max(budget, 0.0) * 1.001:
                J = J_reseeded
                result.reseeded = count
                result.changed = True
            else:
                _copy_parameters_(net, backup)
                note(f"re-seeding would have raised J to {J_reseeded:.10g}; spare branches kept at zero")
    result.objective_after = J
    result.seconds = time.perf_counter() - start
    return result
