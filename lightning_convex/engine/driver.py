"""``engine.solve``: the restricted program at scale, stopping on its own certified gap.

The loop runs a method (:mod:`.admm` by default) in whitened coordinates (:mod:`.operators`),
reads the MATH.md section-5 bound of an iterate every ``check_every`` iterations
(:func:`~.certify.iterate_bound`), and stops when that bound certifies ``tol``, when the time
limit is near, or when a callback asks. The point it returns is then certified again from
scratch in float64 on the program itself (:func:`~.certify.program_certificate`), after a
feasibility repair (:func:`~.certify.repair`); only that final certificate decides the status:

* ``OPTIMAL``: certified relative gap <= ``tol`` with cone violation <= ``tol`` (relative);
* ``TIME_LIMIT`` / ``ITERATION_LIMIT``: the limit came first; the best certified iterate is
  returned with its multipliers, so a later call can continue from it;
* ``NUMERICAL_ERROR``: the iterate stopped being finite (the last finite point is returned).

Everything in the loop stays on the program's device (no host copies but scalar reads at checks).
The deadline is read after every iteration with the cost of the final certificate (estimated
from the warm start's own certificate) held in reserve. On a CPU the loop picks its thread count
by timing (:mod:`.threads`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from typing import Callable, Optional

import torch

from ..model import ParallelReLU
from ..program import RestrictedProgram
from ..reconstruct import network_variable
from ..solution import Solution, SolveStatus
from .admm import Admm
from .pdhg import Pdhg
from .certify import Bound, iterate_bound, program_certificate, repair, rescale_multipliers
from .operators import Operators
from .threads import ThreadTuner

METHODS = {"admm": Admm, "pdhg": Pdhg}
#: the loop stops for a final certificate once the iterate's bound reaches tol * STOP_MARGIN
#: (the final float64 recomputation and the repair move the gap a little)
STOP_MARGIN = 0.8
DEFAULT_CHECK_EVERY = 25
#: checks whose bound is within this many tol refine the multipliers (one more product)
REFINE_FROM = 3.0
#: the final certificate (two candidates, a repair and one more bound) costs about this many
#: float64 certificates of one point; once one has run, its measured time replaces the estimate
FINAL_COST = 8
#: a feasibility repair is kept when it raises J by at most this fraction of tol * J
REPAIR_BUDGET = 0.1


@torch.no_grad()
def starting_point(program: RestrictedProgram, warm_start, multipliers=None):
    """(Q0 float64 (P, m, d'), multipliers (mu1 (P, n, m), mu2 (P, n)) or None, info) from
    ``warm_start``: a :class:`Solution` over the same patterns (Q and its multipliers), the
    :class:`ParallelReLU` the patterns came from (its convex variable, MATH.md section 2), a
    tensor Q (P, m, d'), or ``None`` (Q = 0). Explicit ``multipliers`` override a Solution's."""
    info = {}
    mult = None
    if warm_start is None:
        Q = torch.zeros(program.shape, dtype=torch.float64, device=program.device)
        info["warm_start"] = "none"
    elif isinstance(warm_start, Solution):
        theirs = warm_start.program.patterns
        if (len(theirs), theirs.n) != (program.P, program.n) or \
                theirs.index_in(program.patterns) != list(range(program.P)):
            raise ValueError("warm_start is a Solution over a different pattern set than the program's")
        Q = warm_start.Q.to(device=program.device, dtype=torch.float64)
        mult = warm_start.multipliers
        info["warm_start"] = "solution"
        if warm_start.solver == "engine":  # resume its penalty too
            info["warm_rho"] = (warm_start.info.get("method"), warm_start.info.get("rho"))
    elif isinstance(warm_start, ParallelReLU):
        net = warm_start
        if net.W1.device != program.device:
            net = copy.deepcopy(net).to(program.device)  # move the small network, never the data
        Q, dropped = network_variable(net, program.rows, program.patterns, count_dropped=True)
        info.update(warm_start="network", warm_start_dropped_branches=dropped)
    elif isinstance(warm_start, torch.Tensor):
        Q = program.check_variable(warm_start).double()
        info["warm_start"] = "variable"
    else:
        raise TypeError(f"warm_start must be a Solution, a ParallelReLU, a (P, m, d') tensor Q or None, "
                        f"got {type(warm_start).__name__}")
    if tuple(Q.shape) != program.shape:
        raise ValueError(f"the warm start has shape {tuple(Q.shape)}, the program needs {program.shape}")
    if multipliers is not None:
        mult = multipliers
    if mult is not None:
        mu1, mu2 = mult
        if tuple(mu1.shape) != (program.P, program.n, program.m):
            raise ValueError(f"mu1 must have shape {(program.P, program.n, program.m)}, got {tuple(mu1.shape)}")
        if (mu2 is None) != (program.depth == 2):
            raise ValueError("mu2 must be given for depth 3 and None for depth 2")
        mult = (mu1.to(program.device).clamp_min(0), None if mu2 is None else mu2.to(program.device).clamp_min(0))
        info["warm_multipliers"] = True
    return Q, mult, info


def _check_options(time_limit, tol, dtype, method, check_every, max_iter):
    if not isinstance(time_limit, (int, float)) or isinstance(time_limit, bool) or not time_limit > 0:
        raise ValueError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
    if not isinstance(tol, (int, float)) or isinstance(tol, bool) or not 0 < tol < 1:
        raise ValueError(f"tol must be a number in (0, 1), got {tol!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a torch floating dtype, got {dtype!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    if not isinstance(check_every, int) or isinstance(check_every, bool) or check_every < 1:
        raise ValueError(f"check_every must be a positive integer, got {check_every!r}")
    if max_iter is not None and (not isinstance(max_iter, int) or isinstance(max_iter, bool) or max_iter < 1):
        raise ValueError(f"max_iter must be a positive integer or None, got {max_iter!r}")


def _score(bound: Bound) -> float:
    """How far a certificate is from proving optimality: a negative gap (J below the bound) means
    an infeasible point, so it counts like a positive one, and so does the cone violation."""
    return max(abs(bound.gap), bound.violation)


def _certified(bound: Bound, tol: float) -> bool:
    """The OPTIMAL test: certified relative gap and relative cone violation both within tol."""
    return bound.gap <= tol and bound.violation <= tol


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Run:
    """One solve's loop state: the checks so far, the best one, and the final certificate."""

    def __init__(self, program, ops, alg, tol, reference, info, reserve):
        self.program, self.ops, self.alg, self.tol = program, ops, alg, tol
        self.reserve = reserve  # seconds the final certificate is expected to take
        self.reference, self.info = reference, info
        self.history = []
        self.best = None    # (Bound, Z, Q prox, A Z, mu1, mu2) of the best check (by _score)
        self.final = None   # (Bound, Q, repaired patterns, (mu1, mu2) program layout)
        self.margin = STOP_MARGIN

    def entry(self, bound, chk, copy: bool):
        parts = (chk.Z, chk.Q, chk.pred, chk.mu1, chk.mu2)
        if copy:
            parts = tuple(None if t is None else t.clone() for t in parts)
        return (bound,) + parts

    def check(self, bound, chk) -> bool:
        """Record a check; True when its final certificate proves ``tol``. Near the target the
        multipliers are refined first (:func:`~.certify.rescale_multipliers`)."""
        if bound.gap <= REFINE_FROM * self.tol:
            refined, mu1, mu2 = rescale_multipliers(self.ops, chk, self.program.beta)
            self.alg.products += 1
            if refined.lower > bound.lower:
                bound, chk = refined, dataclasses.replace(chk, mu1=mu1, mu2=mu2)
        candidate = None
        if self.best is None or _score(bound) < _score(self.best[0]):
            candidate = self.best = self.entry(bound, chk, copy=True)
        if bound.gap <= self.margin * self.tol and bound.violation <= self.tol:
            self.final = self.finalize(candidate or self.entry(bound, chk, copy=False))
            if _certified(self.final[0], self.tol):
                return True
            self.margin /= 2  # float64 and the candidate choice disagreed with the iterate's bound
        return False

    def finalize(self, entry):
        """The final float64 certificate of a check: its primal point is the better (by
        :func:`_score`) of Z and the prox output (exact zero groups), repaired when that is
        cheap; the bound is recomputed from the returned point's own residual (what an
        independent check recomputes from the Solution), the iterate's residual recorded too.
        Its duration is kept as the reserve the loop leaves for the next one."""
        started = time.perf_counter()
        program, ops = self.program, self.ops
        _, Z, Qprox, pred, mu1, mu2 = entry
        mu1p, mu2p = ops.to_program_layout(mu1.double(), None if mu2 is None else mu2.double())
        scored = [(program_certificate(program, Q, mu1p, mu2p), Q) for Q in (ops.to_q(Qprox), ops.to_q(Z))]
        bound, Q = min(scored, key=lambda r: _score(r[0]))
        Q, moved = repair(program, Q, self.reference, budget=REPAIR_BUDGET * self.tol * abs(bound.primal))
        if moved:
            bound = program_certificate(program, Q, mu1p, mu2p)
        alt = program_certificate(program, Q, mu1p, mu2p, bound_from=program.y.double() - pred.double())
        self.info["lower_bound_iterate_residual"] = alt.lower
        self.reserve = max(self.reserve, 1.5 * (time.perf_counter() - started))
        return bound, Q, moved, (mu1p, mu2p)


@torch.no_grad()
def solve(program: RestrictedProgram, time_limit: float = 60.0, tol: float = 1e-2, warm_start=None,
          multipliers=None, dtype: torch.dtype = torch.float32, callback: Optional[Callable] = None,
          method: str = "admm", rho: Optional[float] = None, check_every: int = DEFAULT_CHECK_EVERY,
          max_iter: Optional[int] = None, tune_threads: bool = True, verbose: bool = False) -> Solution:
    """Solve ``program`` until its certified relative gap is at most ``tol`` (module docstring).

    Args:
        time_limit: wall seconds for the whole call (setup, iteration and final certificate).
        tol: target certified relative gap (J - LB) / J, and the relative cone violation allowed.
        warm_start: a :class:`Solution` over the same patterns, the :class:`ParallelReLU` the
            patterns were read from, a tensor Q (P, m, d'), or ``None``.
        multipliers: (mu1 (P, n, m), mu2 (P, n) or None) >= 0 to start the cone duals from
            (e.g. a previous call's ``solution.multipliers``); a Solution warm start brings its own.
        dtype: precision of the iteration's passes (certificates are float64 regardless).
        callback: called as ``callback(record)`` at every check with a dict (iteration,
            passes, seconds, objective, lower_bound, gap, violation_rel, rho); returning ``True``
            stops.
        method: ``"admm"`` (:mod:`.admm`, the default, chosen from measurements) or ``"pdhg"``
            (:mod:`.pdhg`, the alternative it was measured against).
        rho: the method's starting penalty (default: the method's own).
        check_every: iterations between two certificate checks (each costs one more product).
        max_iter: iterations at most (default: no limit but the time).
        tune_threads: on a CPU, let the loop choose between torch's thread count and one thread
            by timing (:mod:`.threads`; the caller's count is restored).
        verbose: print every check.

    Returns:
        a :class:`Solution` (solver ``"engine"``) with ``multipliers`` >= 0 in the program's
        layout and ``info``: ``gap``, ``lower_bound`` (the final float64 certificate),
        ``violation_rel``, ``dual_ratio`` (max_p B_p / beta), ``method``, ``iterations``,
        ``passes`` (products X q / X^T w over all rows, a pass each), ``rho``, ``threads``,
        ``setup_seconds``, ``repaired_patterns``, ``history`` (the checks), ``stop`` (why it stopped).
    """
    start = time.perf_counter()
    if not isinstance(program, RestrictedProgram):
        raise TypeError(f"program must be a RestrictedProgram, got {type(program).__name__}")
    _check_options(time_limit, tol, dtype, method, check_every, max_iter)
    deadline = start + time_limit
    Q0, mult0, info = starting_point(program, warm_start, multipliers)
    # the thread count is chosen (and restored) around everything that computes, setup included
    tuner = ThreadTuner(program.device, enabled=tune_threads)
    try:
        ops = Operators(program, dtype=dtype)
        # the warm start's own certificate says whether Q0 is a feasible reference for the repair,
        # and its cost measures what the final certificate will cost (kept in reserve)
        t_cert = time.perf_counter()
        zero = torch.zeros(program.P, program.n, program.m, dtype=torch.float64, device=program.device)
        start_bound = program_certificate(program, Q0, zero, None if program.depth == 2 else zero[:, :, 0])
        reserve = FINAL_COST * (time.perf_counter() - t_cert)  # raised to a measured one later
        del zero
        alg = METHODS[method](ops) if rho is None else METHODS[method](ops, rho=rho)
        warm_method, warm_rho = info.pop("warm_rho", (None, None))
        resume = warm_rho if rho is None and warm_method == method else None
        alg.start(ops.to_z(Q0), None if mult0 is None else ops.from_program_layout(*mult0), rho=resume)
        _sync(ops.device)
        info.update(method=method, dtype=str(dtype).replace("torch.", ""), device=str(ops.device), tol=tol,
                    rank=ops.r, setup_seconds=time.perf_counter() - start, start_objective=start_bound.primal)
        run = _Run(program, ops, alg, tol, Q0 if start_bound.violation == 0.0 else None, info, reserve)

        stop = "time_limit"
        iteration = 0
        while True:
            iteration += 1
            is_check = iteration % check_every == 0
            t_check = time.perf_counter()
            chk = alg.step(check=is_check)
            if chk is None:
                tuner.iteration_done(time.perf_counter() - t_check)
            else:
                bound = iterate_bound(ops, chk, program.beta)
                now = time.perf_counter()
                check_seconds = now - t_check
                record = {"iteration": iteration, "passes": 0.5 * alg.products, "seconds": now - start,
                          **bound.as_dict(), "rho": alg.state.rho, "threads": torch.get_num_threads()}
                run.history.append(record)
                if verbose:
                    print(f"[engine/{method}] it {iteration:6d} t {now - start:7.2f}s J {bound.primal:.8g} "
                          f"LB {bound.lower:.8g} gap {bound.gap:.3e} viol {bound.violation:.1e} "
                          f"B/beta {bound.dual_ratio:.4f} rho {alg.state.rho:.3g}", flush=True)
                if not (math.isfinite(bound.primal) and math.isfinite(bound.lower)):
                    stop = "nan"
                    break
                if run.check(bound, chk):
                    stop = "converged"
                    break
                if callback is not None and callback(record):
                    stop = "callback"
                    break
                if now + run.reserve + check_seconds >= deadline:
                    break
            if max_iter is not None and iteration >= max_iter:
                stop = "max_iter"
                break
            if time.perf_counter() + run.reserve >= deadline:
                break
        if run.best is None:  # stopped before the first check: certify the current point
            chk = alg.step(check=True)
            run.best = run.entry(iterate_bound(ops, chk, program.beta), chk, copy=False)
        if stop != "converged":
            run.final = run.finalize(run.best)
    finally:
        tuner.restore()
    bound, Q, moved, (mu1p, mu2p) = run.final
    status = {"converged": SolveStatus.OPTIMAL,
              "time_limit": SolveStatus.TIME_LIMIT,
              "max_iter": SolveStatus.ITERATION_LIMIT,
              "callback": SolveStatus.USER_LIMIT,
              "nan": SolveStatus.NUMERICAL_ERROR}[stop]
    if _certified(bound, tol) and stop != "nan":
        status = SolveStatus.OPTIMAL
    info.update(bound.as_dict())
    info.update(iterations=iteration, passes=0.5 * alg.products, rho=alg.state.rho, threads=tuner.choice,
                repaired_patterns=moved, history=run.history, stop=stop)
    mult = (mu1p.to(program.dtype), None if mu2p is None else mu2p.to(program.dtype))
    return Solution.from_variable(program, Q.to(program.dtype), status=status,
                                  seconds=time.perf_counter() - start, iterations=iteration,
                                  solver="engine", multipliers=mult, info=info)
