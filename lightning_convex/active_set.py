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

Budget (``time_limit``, seconds for the whole call; never unbounded by default). The rounds share
one deadline: each solve gets what is left as its own ``time_limit`` (Clarabel included, which
stops only at its own limit), and no round starts with less than ``MIN_SOLVE_SECONDS`` left.
When the budget ends inside a solve, its best iterate (the engine's, or Clarabel's last) is
rebuilt into a copy of the network and written back only if that copy's J is below J(theta):
a time-limited iterate may violate its cones slightly, so the rebuilt network, not the solver's
objective, decides. ``stop_reason`` is then ``"budget"`` and the messages say "budget reached".
Ctrl-C and SIGTERM (:mod:`lightning_convex.monitor`) stop the current solve the same way within
about a second (the engine stops at its next check) with ``stop_reason`` ``"interrupted"``; the
signal then goes on to the handler installed before (Ctrl-C raises ``KeyboardInterrupt``), so the
network is left unchanged or improved, never half written. A progress bar shows rounds that take
more than a few seconds (``progress=False``: none).

Inexact backends (the engine stops at a certified relative gap ``tol``). A round gains by
re-reading patterns, and measured on Fashion-MNIST a loosely solved round gains about as much as
a tightly solved one in a fraction of the time, so when no ``tol`` is given the first round is
solved to ``ROUND_TOL_START`` and each later one to ``ROUND_TOL_SHARE`` times the previous
round's relative gain (at most ``ROUND_TOL_START``), never tighter than the backend's own default tolerance (its target). A
loosely solved round that does not lower J, or whose pattern set comes round again, is solved
again at the target. A solve whose certified lower bound is at least (1 - target) J(theta) ends
the rounds as ``"converged"`` to that tolerance (after loading it, when its rebuilt network is
lower), since no further round can gain more than target * J(theta) on that set.

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
from .model import ParallelReLU, network_rows
from .monitor import Monitor
from .objective import objective
from .patterns import PatternSet, patterns_of, private_generator, sample_patterns, union
from .program import RestrictedProgram
from .reconstruct import load_solution_, network_variable
from .solution import Solution, SolveStatus
from .solvers import backend, choose_solver, solve
from .solvers.registry import DEFAULT_TIME_LIMIT
from .spare import reseed_spare_, spare_branches

__all__ = ["ActiveSetResult", "active_set_solve", "largest_patterns", "reseed_spare_", "spare_branches",
           "without_numerical_zeros"]

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
STOP_REASONS = ("converged", "repeated", "max_rounds", "failed", "worse", "budget", "interrupted")
#: no round starts with less than this many seconds of the budget left
MIN_SOLVE_SECONDS = 0.5
#: Inexact backends (the engine) solve the first round to this tolerance and each later round to
#: this share of the previous round's relative gain (never tighter than their own default): a
#: round gains by re-reading patterns, so solving far more accurately than rounds still gain is
#: wasted time.
ROUND_TOL_START = 0.5
ROUND_TOL_SHARE = 4.0


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
            "repeated"): then J(theta) <= OPT(S(theta)) / (1 - rtol) before any re-seeding
            (with an inexact backend, (1 - its tol) in place of (1 - rtol); see the module notes).
        stop_reason: one of ``"converged"``, ``"repeated"``, ``"max_rounds"``, ``"failed"``
            (a solve was not optimal), ``"worse"`` (a rebuilt network was not below J),
            ``"budget"`` (the time limit ended the rounds), ``"interrupted"`` (SIGINT / SIGTERM).
        patterns: the pattern set of the last solve whose optimum the network equals (loaded) or
            certifies (``"converged"``); ``None`` when no solve succeeded or the network was last
            written from an iterate a limit stopped.
        active: nonzero branches after the rounds (before re-seeding).
        reseeded: spare branches re-seeded (``spare="reseed"``).
        messages: human-readable notes (failed or rejected solves, truncations, "budget reached").
        time_limit: the budget of the call, seconds.
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
    time_limit: float = DEFAULT_TIME_LIMIT

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


def _run_solver(program: RestrictedProgram, solver: str, warm_start, options: dict, remaining: float,
                round_tol: float):
    """(solution, budgeted): one solve; ``budgeted`` says whether the backend got the rounds'
    remaining time as its ``time_limit`` (so its TIME_LIMIT status means the budget ended). An
    inexact backend that takes ``tol`` and was given none solves at ``round_tol``, never tighter
    than its own default, which is recorded as ``solution.info["target_tol"]``."""
    name = choose_solver(program, remaining)[0] if solver == "auto" else solver
    chosen = backend(name)
    declared = chosen.options or frozenset()
    if warm_start is not None and chosen.capabilities.warm_start:
        options = dict(options, warm_start=warm_start)
    budgeted = "time_limit" in declared
    if budgeted:
        own = options.get("time_limit")
        budgeted = own is None or own >= remaining
        options = dict(options, time_limit=remaining if budgeted else own)
    target = None
    if not chosen.capabilities.exact and "tol" in declared and "tol" not in options:
        target = chosen.default("tol")
        options = dict(options, tol=max(round_tol, target))
    solution = solve(program, solver=name, **options)
    if target is not None:
        solution.info["target_tol"] = target
    return solution, budgeted


def largest_patterns(solution: Solution, count: int) -> Solution:
    """The solution with all but its ``count`` largest patterns (by t_p) set to zero, so that it
    fits ``count`` branches (the solution itself when it already does)."""
    t = solution.pattern_norms()
    if int(solution.active_patterns().sum()) <= count:
        return solution
    Q = solution.Q.clone()
    Q[torch.argsort(t, descending=True)[count:]] = 0
    return Solution.from_variable(solution.program, Q, status=solution.status, seconds=solution.seconds,
                                  iterations=solution.iterations, solver=solution.solver,
                                  multipliers=solution.multipliers, info=solution.info)


def _copy_parameters_(dst: ParallelReLU, src: ParallelReLU) -> None:
    with torch.no_grad():
        for name, param in dst.named_parameters():
            param.copy_(getattr(src, name).detach())


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
    time_limit: Optional[float] = None,
    progress: Optional[bool] = None,
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
        time_limit: seconds for the whole call, shared by its rounds (module notes); ``None``:
            :data:`~lightning_convex.solvers.registry.DEFAULT_TIME_LIMIT`.
        progress: show a progress bar when the rounds take more than a few seconds (``None``:
            yes; ``False``: never).

    Returns:
        An :class:`ActiveSetResult`.

    Raises:
        KeyboardInterrupt: after Ctrl-C, once the network is left unchanged or improved.
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
    time_limit = DEFAULT_TIME_LIMIT if time_limit is None else time_limit
    if not (isinstance(time_limit, (int, float)) and not isinstance(time_limit, bool) and time_limit > 0):
        raise ValueError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
    net.check_finite_()
    device = net.W1.device
    rows = network_rows(net, X, y)  # validated once: everything below reads these rows
    generator = private_generator(generator)  # one stream for sampling, search and re-seeding
    options = dict(solver_options or {})

    start = time.perf_counter()
    J = objective(net, rows, beta=beta)
    result = ActiveSetResult(objective_before=J, objective_after=J, objectives=[J], time_limit=float(time_limit))
    seen = set()
    loose = set()  # pattern sets solved only looser than the backend's own tolerance
    gain = None  # relative gain of the latest round that changed the network

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
        """(optimal solution or None, last solution or None, whether the last one had the budget):
        one solve, and on a non-optimal status up to ``retries`` more, each at 10x the tolerance
        the previous attempt used (the backend's own default first, as its Solution reports it).
        Interior points can stop short ("almost solved") at a tight default on programs they
        solve at a looser one to the same objective. Backends without a ``tol`` option, and
        stops at a time limit or by a signal, are not retried; nothing starts once the budget is
        spent or a signal came."""
        round_tol = ROUND_TOL_START if gain is None else min(ROUND_TOL_START, ROUND_TOL_SHARE * gain)
        program = RestrictedProgram(rows, None, patterns, beta)
        opts = dict(options)
        last, budgeted = None, False
        for attempt_index in range(retries + 1):
            remaining = watch.remaining()
            if remaining < MIN_SOLVE_SECONDS or watch.interrupted:
                break
            solution, budgeted = _run_solver(program, solver, warm, opts, remaining, round_tol)
            last = solution
            result.solves += 1
            result.solver_seconds += solution.seconds
            result.statuses.append(str(solution.status))
            result.solver_objectives.append(float(solution.objective))
            if solution.is_optimal:
                solution = without_numerical_zeros(solution)
                return solution, solution, budgeted
            if solution.status in RETRY_NEVER:
                break  # a limit stopped it: the caller decides what its iterate is worth
            used = solution.info.get("tol")
            at = f" at tol {used:.0e}" if isinstance(used, float) else ""
            note(f"the {solution.solver} solve over {len(patterns)} patterns ended with status "
                 f"{solution.status}{at}; not used")
            if not isinstance(used, float):
                break
            opts["tol"] = used * 10.0
        return None, last, budgeted

    def judge(solution: Solution, J: float, round_index: int) -> str:
        """"improves", "converged" (OPT(S) >= (1 - rtol) J), "close" (an inexact backend certified
        OPT(S) >= (1 - its tol) J) or "inconsistent": an objective above J(theta) although the
        network is a feasible point of the set (it holds the network's own patterns), so the
        solver stopped short of the optimum whatever its status says."""
        lower = solution.info.get("lower_bound")
        tol = solution.info.get("target_tol", solution.info.get("tol"))
        if isinstance(lower, float) and isinstance(tol, float) and tol > rtol and lower >= (1.0 - tol) * J:
            return "close"
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
        if solution.is_optimal:
            load_solution_(candidate, solution)
        else:  # a limited iterate: its K largest patterns, judged by the rebuilt network's J
            candidate.write_solution_(largest_patterns(solution, net.branches))
        return candidate, objective(candidate, rows, beta=beta)

    def accept(candidate, J_candidate: float, patterns: Optional[PatternSet]) -> float:
        nonlocal gain
        gain = (J - J_candidate) / J if J > 0 else 0.0
        _copy_parameters_(net, candidate)
        result.changed = True
        result.patterns = patterns
        result.objectives.append(J_candidate)
        watch.update(f"round {result.rounds}, J {J_candidate:.6g}")
        return J_candidate

    def limited(last: Optional[Solution], budgeted: bool, round_index: int) -> bool:
        """True when the budget or a signal ends the rounds, after writing ``last`` (a solve the
        limit stopped) back when its rebuilt network is below J (module notes)."""
        nonlocal J
        signal_name = watch.interrupted
        spent = watch.remaining() < MIN_SOLVE_SECONDS or (
            last is not None and budgeted and last.status == SolveStatus.TIME_LIMIT)
        if signal_name is None and not spent:
            return False
        why = f"interrupted by {signal_name}" if signal_name else f"budget reached ({time_limit:.3g} s)"
        result.stop_reason = "interrupted" if signal_name else "budget"
        if last is None or last.is_optimal or last.status not in RETRY_NEVER:
            note(f"round {round_index + 1}: {why}; the network is left as it was (J = {J:.10g})")
            return True
        candidate, J_candidate = rebuild(last)
        if J_candidate < J:
            note(f"round {round_index + 1}: {why}: kept the {last.solver} solve's {last.status} iterate, "
                 f"J {J:.10g} -> {J_candidate:.10g}")
            J = accept(candidate, J_candidate, None)
        else:
            note(f"round {round_index + 1}: {why}: the {last.solver} solve's {last.status} iterate "
                 f"rebuilds to J = {J_candidate:.10g}, not below {J:.10g}; the network is left as it was")
        return True

    def solve_round(patterns: PatternSet, warm: torch.Tensor, round_index: int):
        """(solution, verdict) of :func:`attempt` over ``patterns``; (None, None) when the rounds
        end here (a failed solve, the budget or a signal, or a settled verdict)."""
        solution, last, budgeted = attempt(patterns, warm)
        if solution is None:
            if not limited(last, budgeted, round_index):
                failed(last, len(patterns), round_index)
            return None, None
        verdict = judge(solution, J, round_index)
        return (None, None) if settled(verdict, patterns) else (solution, verdict)

    def failed(last: Optional[Solution], count: int, round_index: int) -> None:
        result.stop_reason = "failed"
        status = "no status" if last is None else f"status {last.status}"
        solver_name = solver if last is None else last.solver
        note(f"round {round_index + 1}: the {solver_name} solve ended with {status} over {count} patterns; "
             f"the network is left as it was (J = {J:.10g})", warning=True)

    with Monitor(time_limit, "active-set rounds", progress) as watch:
        for round_index in range(max_rounds):
            if limited(None, False, round_index):
                break
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
            if key in seen and key not in loose:
                result.converged, result.stop_reason = True, "repeated"
                break
            if key in loose:  # seen, but only at a round's loose tolerance: solve it properly
                loose.discard(key)
                gain = 0.0
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

            solution, verdict = solve_round(patterns, network_variable(net, rows, patterns), round_index)
            if solution is None:
                break
            used = patterns
            nonzero = int(solution.active_patterns().sum())
            if nonzero > net.branches:
                # only with extra patterns: the network's own set has at most K patterns
                note(f"round {round_index + 1}: {nonzero} patterns nonzero for K = {net.branches} "
                     "branches; solving again over the K largest by t_p")
                top = torch.sort(torch.argsort(solution.pattern_norms(), descending=True)[: net.branches]).values
                used = patterns.select(top)
                solution, last, budgeted = attempt(used, solution.Q[top])
                if solution is None and limited(last, budgeted, round_index):
                    break
                if solution is None or solution.objective >= (1.0 - rtol) * J:
                    note(f"round {round_index + 1}: the K largest patterns do not improve on the "
                         "network; solving over its own patterns")
                    used = own
                    solution, verdict = solve_round(own, network_variable(net, rows, own), round_index)
                    if solution is None:
                        break
            if solution.info.get("tol", 0.0) > solution.info.get("target_tol", math.inf):
                loose.add(key)
            candidate, J_candidate = rebuild(solution)
            improved = J_candidate < J
            if improved:
                J = accept(candidate, J_candidate, used)
            if verdict == "close":  # within the solver's tolerance of OPT(S): a fixed point to tol
                settled("converged", used)
                note(f"round {round_index + 1}: the {solution.solver} solve certified the network "
                     f"within its tolerance {solution.info['tol']:.0e} of OPT(S); stopped there")
                break
            if not improved and key in loose:
                note(f"round {round_index + 1}: the {solution.solver} solve at the round's tolerance "
                     f"{solution.info['tol']:.0e} did not lower J; solving the set again at its own tolerance")
                continue
            if not improved:
                result.stop_reason = "worse"
                note(f"round {round_index + 1}: the rebuilt network has J = {J_candidate:.10g}, not "
                     f"below {J:.10g} (solver objective {solution.objective:.10g}); the network is "
                     "left as it was", warning=True)
                break
        else:
            result.stop_reason = "max_rounds"
            note(f"stopped after max_rounds = {max_rounds} rounds without reaching a fixed point")

        result.active = int((~spare_branches(net)).sum())
        if spare == "reseed" and watch.interrupted is None:
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
        watch.update(f"J {result.objective_before:.6g} -> {J:.6g} ({result.stop_reason})")
    return result
