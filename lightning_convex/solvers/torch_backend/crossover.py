"""Crossover from an interior-point iterate to the exact solution of its face.

An interior point approaches the optimum through the interior of the cones: the groups that are
zero at the optimum shrink like the barrier parameter, the rows tight at the optimum keep slacks
of the same order, and in float64 the normal equations lose the accuracy to go much below a
relative gap of ~1e-6 on degenerate programs (many dependent tight rows; the programs of random
networks and sampled gates are such). The iterate does name the optimal support (the groups far
above the barrier level) and face (the rows the multipliers call active), and on them the program
is smooth with linear constraints: the exact face polish of the OSQP backend
(:func:`lightning_convex.solvers.osqp_backend.polish.polish`: Newton on the face, degenerate-safe
tangent-cone steps, rows entering and leaving, every iterate exactly feasible) solves it to
rounding and fits the multipliers of the MATH.md section 5 certificate. This is the classic
interior-point crossover (identify the optimal face, finish with an active-set method), done in
numpy on the CPU: the interior point is for small programs, whose face solves are small.

The support is read at a few levels of t_pj relative to the largest group; the polish keeps only
a level that certifies, and the caller accepts the result only through the same certificate test
as the interior point's own iterates (:func:`.certificate.converged`).

A polish can stop with the gap open although its point is nearly optimal: when the iterate named
the support wrongly (a group the optimum keeps at a small norm went to zero), that group's dual
constraint stays violated and no multipliers close the gap. The final crossover of a run
(``finish``) then continues from the best polished point with the OSQP backend's smoothed
proximal Newton steps (:func:`lightning_convex.solvers.osqp_backend.run.run`), which converge to
the optimum whatever the starting guess and polish again as they go, within the solve's deadline.
"""

from __future__ import annotations

import time
import numpy as np
import torch
from threadpoolctl import threadpool_limits

from ...program import RestrictedProgram
from ..osqp_backend.face import FaceNewton
from ..osqp_backend.limits import Limits, Stop
from ..osqp_backend.polish import polish
from ..osqp_backend.projection import project_feasible
from ..osqp_backend.problem import Problem
from ..osqp_backend.run import DEFAULT_EPS, DEFAULT_FEAS_TOL, run
from ..osqp_backend.run import Settings as RunSettings
from ...solution import SolveStatus

#: support levels tried (a group is in S when its norm exceeds level * the largest group norm)
SUPPORT_LEVELS = (1e-3, 1e-5, 1e-7)
#: polish rounds (face solves and tangent steps) one crossover may take, all levels together
MAX_POLISH_ITER = 200
#: outer iterations of the smoothed continuation that finishes an uncertified final crossover
MAX_FINISH_ITER = 500


class Crossover:
    """The program's numpy form, built once per solve and reused by every crossover attempt."""

    def __init__(self, program: RestrictedProgram):
        self.program = program
        self.pb = Problem(program)
        self.face = FaceNewton(self.pb)
        self.attempts = 0

    def __call__(self, Q: torch.Tensor, active: torch.Tensor, tol: float, deadline: float,
                 finish: bool = False):
        """(Q, mu1, mu2) of the best-certified polish from the iterate Q, or None when no
        polish certified a gap <= tol before ``deadline``. ``active`` (per cone row, in the order
        of :meth:`RestrictedProgram.cone_matrix`): the rows whose multiplier exceeds their slack,
        the interior point's guess of the rows tight at the optimum. With ``finish`` (the run's
        last attempt), an uncertified polish is continued by the smoothed method (module
        docstring)."""
        pb = self.pb
        self.attempts += 1
        q = Q.detach().double().cpu().numpy().reshape(-1)
        active = active.detach().cpu().numpy().reshape(-1)
        nr = pb.norms(q)
        top = float(nr.max(initial=0.0))
        if top <= 0:
            return None
        limits = Limits(deadline, MAX_POLISH_ITER)
        best = None
        seen = []
        # the face algebra is small dense blocks: threaded BLAS only adds synchronisation (the
        # OSQP backend runs its polish under the same limit)
        with threadpool_limits(limits=1, user_api="blas"):
            try:
                for level in SUPPORT_LEVELS:
                    S = nr > level * top
                    if any(np.array_equal(S, s) for s in seen):
                        continue
                    seen.append(S)
                    result = polish(pb, self.face, q, S, active, tol, limits)
                    if best is None or result.gap < best.gap:
                        best = result
                    if result.gap <= tol:
                        break
            except Stop:
                pass
            if finish and (best is None or not best.gap <= tol) and time.perf_counter() < deadline:
                q_best, mu_best = self._finish(q if best is None else best.q, tol, deadline)
                if q_best is None:
                    return None
            elif best is None or not best.gap <= tol:
                return None
            else:
                q_best, mu_best = best.q, best.mu
        prog = self.program
        mu1_new, mu2_new = prog.split_multipliers(mu_best)
        return prog.unflatten(q_best), mu1_new, mu2_new

    def _finish(self, q: np.ndarray, tol: float, deadline: float):
        """(q, mu) of the smoothed continuation from q when it certifies a gap <= tol, else
        (None, None)."""
        settings = RunSettings(tol=tol, eps=DEFAULT_EPS, feas_tol=DEFAULT_FEAS_TOL, max_iter=MAX_FINISH_ITER,
                               verbose=False)
        q0, _ = project_feasible(self.pb, q, self.pb.norms(q) > 0)
        result = run(self.pb, q0, settings, Limits(deadline, MAX_FINISH_ITER))
        if result.status != SolveStatus.OPTIMAL or not result.info["gap"] <= tol:
            return None, None
        return result.q, result.mu


def deadline_of(start: float, time_limit: float) -> float:
    """The crossover's deadline: the solve's own."""
    return start + time_limit if np.isfinite(time_limit) else time.perf_counter() + 1e9
