"""The restricted program solved on its own device (CPU or CUDA) with torch: ``solver="torch"``.

The program (MATH.md section 3) in conic form, with q = vec(Q) (N = P m d' entries) and one
epigraph variable t_pj per group:

    minimize  1/2 ||y - A q||^2 + beta * sum_{p,j} t_pj
    s.t.      G q >= 0                      (the pattern cone rows, multipliers mu >= 0)
              ||q_pj||_2 <= t_pj            (one second-order cone per group)

Two methods share this module; ``method="auto"`` picks by size (:func:`choose_method`).

``"alm"`` -- matrix-free, first order, for large programs (the Fashion-MNIST scale). An augmented
Lagrangian on the cone rows only; the group norms stay in a prox:

    L_rho(Q; mu) = 1/2 ||y - A Q||^2 + beta sum ||q_pj|| + 1/(2 rho) ||max(0, mu - rho G Q)||^2

* inner loop: FISTA (Beck & Teboulle 2009) with backtracking that may also lengthen the step
  (Scheinberg, Goldfarb & Bai 2014; L shrinks 0.9x per iteration, doubles on a failed sufficient
  decrease test) and the gradient-based adaptive restart of O'Donoghue & Candes (2015).
  Gradient -(A^T r + G^T mu_hat), r = y - A Q, mu_hat = max(0, mu - rho G Q); prox = the group
  soft-threshold (zero groups come out exactly zero). The penalty's curvature rho G_J^T G_J only
  involves the rows J it currently acts on, so backtracking finds steps 10-100x longer than the
  global bound ||A||^2 + rho ||G||^2 (measured: L / ||A||^2 of 3-50 against 101). A and G are
  linear, so the extrapolated point's A Y and G Y are combinations of stored rows: one iteration
  is one :meth:`RestrictedProgram.forward` pass at the trial point (A Q and G Q from one product
  X q) and one :meth:`RestrictedProgram.adjoint` pass (A^T r + G^T mu_hat from one product
  X^T W), plus one forward per failed backtracking test; both chunked over patterns on the
  device. Memory: five (P, n, m) row buffers (rows of the current, previous, trial and
  extrapolated points, and mu1; float32 at n = 60000, P = 40, m = 100: 5 x 0.96 GB), plus chunk
  temporaries and the (P, m, d') iterates. It stops when max_pj L ||Y_pj - Q+_pj|| <= eps beta
  or after 200 iterations (an inexact solve still moves mu, which the certificate needs).
* outer loop: mu <- max(0, mu - rho G Q) (Hestenes-Powell-Rockafellar; Birgin & Martinez,
  "Practical Augmented Lagrangian Methods", 2014). After an inner solve that met eps, rho grows
  2x when ||mu_new - mu||_inf / rho failed to fall 4x and eps shrinks 5x down to tol / 10.
  rho starts at 100 ||A||^2 / ||G||^2 (both norms from at most 15 power iterations).
  Measured: first-order convergence on these programs is slow in the tail (the multipliers of
  zero groups are large and far from unique): 400-30000 iterations for a 1e-3 to 1e-4 gap on
  n = 24-60 programs. On Fashion-MNIST rows (n = 10000, P = 10, m = 10, float32, 2 CPU cores)
  1367 iterations in 600 s lowered J from 241 to 176 but certified only a 93 % gap: at that
  scale the multipliers, hence the certificate, lag far behind the primal iterate. Use it where
  the interior point does not fit, and read its certified gap.

``"ipm"`` -- for small programs (dense Newton systems fit on the device): a primal-dual
interior-point method with Nesterov-Todd scaling and Mehrotra's predictor-corrector, in the
formulation of Vandenberghe, "The CVXOPT linear and quadratic cone program solvers" (2010),
section "coneqp": normal equations (A^T A + G^T (Z/S) G + sum_pj W_pj^-2) dx = rhs, with A^T A
(:meth:`RestrictedProgram.prediction_gram`, once) and G^T (Z/S) G (:meth:`~RestrictedProgram.cone_gram`,
block diagonal over patterns) formed densely and Cholesky-factored in float64 (static
regularisation 1e-12 relative, two steps of iterative refinement). When the corrected step is
short (< 0.1) a pure centring step (sigma >= 1/2, no corrector) is tried instead. It iterates
towards tol/10 and returns the best-certified iterate; it stops as stalled when neither the
certified gap nor the complementarity halves in 6 steps (float64 normal equations bottom out
near a 1e-7 gap on degenerate programs). Measured on 120 random programs (n <= 90, P <= 16;
benchmarks/torch_vs_clarabel.py, seeds 0-2): objective within 6e-7 of Clarabel in all, rebuilt networks too, OPTIMAL at tol 1e-6 in 118
(the other two INACCURATE at a 1.2-1.6e-6 gap); 9-32 iterations, 0.03-0.33 s on one CPU
thread (Clarabel: ~0.01 s). The ~1e-7 patterns an interior point leaves where the optimum has
zeros are then set to exactly zero (rule at the end of :func:`_ipm`); in 8 of the 120 programs
some stay nonzero that Clarabel's solution has at zero.

Stopping rule (both methods; a certificate, not a heuristic). With v = y - A q and the current
multipliers mu >= 0, bound_pj = ||(A^T v + G^T mu)_pj|| and MATH.md section 5 gives the valid
lower bound LB = g(c v) = c v.y - c^2/2 ||v||^2, c = clip(v.y / ||v||^2, 0, beta / max bound).
The solve is ``OPTIMAL`` when

    J(Q) - LB <= tol * J(Q)     and     max(0, -min G Q) <= tol * max(||y||_inf, ||A Q||_inf),

so an optimal status certifies the objective to ``tol`` relative (up to that feasibility slack).
The multipliers returned (mu1 (P, n, m), mu2 (P, n) or None, >= 0) are the ones in that bound.
Other outcomes: ``max_iter`` -> ITERATION_LIMIT, ``time_limit`` -> TIME_LIMIT, a non-finite
iterate -> NUMERICAL_ERROR (last finite iterate returned), an interior-point stall -> INACCURATE,
an exception (e.g. out of device memory) -> FAILED with Q = 0. Reported objectives are recomputed
in float64 by the program itself (:meth:`Solution.from_variable`).
"""

from __future__ import annotations

import copy
import math
import resource
import time
from typing import Optional

import torch

from ..duality import lower_bound, pattern_bounds, relative_gap
from ..model import ParallelReLU
from ..program import RestrictedProgram
from ..reconstruct import network_variable
from ..rows import ENTRY_CHUNK
from ..solution import Solution, SolveStatus
from .registry import Backend, Capabilities

#: The solver's own outcomes mapped to backend-independent statuses.
STATUS_MAP = {
    "converged": SolveStatus.OPTIMAL,
    "stalled": SolveStatus.INACCURATE,
    "max_iter": SolveStatus.ITERATION_LIMIT,
    "time_limit": SolveStatus.TIME_LIMIT,
    "nan": SolveStatus.NUMERICAL_ERROR,
    "error": SolveStatus.FAILED,
}

METHODS = ("auto", "ipm", "alm")
#: ``"auto"`` uses the interior point while its dense (N + P m)^2 system has at most this many
#: entries and forming G^T (Z/S) G (about P n (m d')^2 flops) stays below IPM_MAX_FLOPS.
IPM_MAX_ENTRIES = 4096 ** 2
IPM_MAX_FLOPS = 2e9
DEFAULT_MAX_ITER = {"ipm": 100, "alm": 50000}
DEFAULT_TOL = {"ipm": 1e-6, "alm": 1e-3}

#: power iterations for ||A||^2 and ||G||^2 (stopping at 1 % change): they only set rho's scale
#: and the first step, and each costs a forward and an adjoint pass (~20 s on 2 CPU cores at
#: the Figure-5 size)
POWER_ITERATIONS = 15
POWER_RTOL = 1e-2
#: FISTA iterations per multiplier step at most: an inexact inner solve still moves mu, which
#: the certificate needs (measured: one outer step in 120 s at n = 1000 left a 60 % gap)
INNER_MAX_ITER = 200
BACKTRACK_MAX = 60
BACKTRACK_DECREASE = 0.9  # the step grows back by 1/0.9 per iteration when the curvature allows
# rho starts at RHO_START ||A||^2 / ||G||^2. Measured on n = 40-60 programs (tol 1e-4): 100 with
# growth 2 needed 3.7k-14k FISTA iterations where 10 with growth 5 needed 5k-20k+.
RHO_START = 100.0
RHO_GROWTH = 2.0
RHO_MAX_FACTOR = 1e4


def choose_method(program: RestrictedProgram) -> str:
    """``"ipm"`` when the dense Newton system is small enough, else the matrix-free ``"alm"``."""
    size = program.num_variables + program.P * program.m
    flops = program.P * program.n * (program.m * program.d) ** 2 + program.n * program.num_variables ** 2
    return "ipm" if size * size <= IPM_MAX_ENTRIES and flops <= IPM_MAX_FLOPS else "alm"


def _check_options(tol, max_iter, time_limit, dtype, method):
    if tol is not None and (not isinstance(tol, (int, float)) or isinstance(tol, bool) or not (0 < tol < 1)):
        raise ValueError(f"tol must be a number in (0, 1), got {tol!r}")
    if max_iter is not None and (not isinstance(max_iter, int) or isinstance(max_iter, bool) or max_iter < 1):
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    if not isinstance(time_limit, (int, float)) or isinstance(time_limit, bool) or not time_limit > 0:
        raise ValueError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
        raise ValueError(f"dtype must be a torch floating dtype (torch.float32 / torch.float64), got {dtype!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def _same_patterns(a, b) -> bool:
    if a is b:
        return True
    if (len(a), a.n, a.hidden, a.depth, a.bias) != (len(b), b.n, b.hidden, b.depth, b.bias):
        return False
    b = b.to(a.device)
    same_d2 = a.D2 is None or torch.equal(a.D2, b.D2)
    return same_d2 and torch.equal(a.D1, b.D1) and torch.equal(a.s, b.s) and torch.equal(a.sig, b.sig)


@torch.no_grad()
def warm_start_variable(program: RestrictedProgram, warm_start):
    """(Q0, (mu1, mu2) or None, info) from a Solution over the same patterns, a ParallelReLU, or
    a tensor Q of the program's shape (P, m, d').

    A network contributes q_kj = w3_k w2_kj W1_k[:, j] (depth 2: w3_k u_k) to the pattern of S
    that branch k lies in (found with :func:`patterns_of` on the program's rows); branches whose
    pattern is not in S are dropped (counted in the info), and branches sharing a pattern add up,
    which stays in the cone and does not increase sum ||q_pj||.
    """
    if isinstance(warm_start, Solution):
        if not _same_patterns(program.patterns, warm_start.program.patterns):
            raise ValueError("warm_start is a Solution over a different pattern set than the program's")
        mult = warm_start.multipliers
        if mult is not None:
            mu1, mu2 = mult
            mu1 = mu1.to(device=program.device, dtype=program.dtype).clamp_min(0)
            mu2 = None if mu2 is None else mu2.to(device=program.device, dtype=program.dtype).clamp_min(0)
            mult = (mu1, mu2)
        Q = program.check_variable(warm_start.Q.to(program.device)).clone()
        return Q, mult, {"warm_start": "solution"}
    if isinstance(warm_start, ParallelReLU):
        net = warm_start
        if net.W1.device != program.device:
            # move the (small) network to the program's device, never the program's data
            net = copy.deepcopy(net).to(program.device)
        Q, dropped = network_variable(net, program.rows, program.patterns, count_dropped=True)
        return Q.to(program.dtype), None, {"warm_start": "network", "warm_start_dropped_branches": dropped}
    if isinstance(warm_start, torch.Tensor):
        # a convex variable Q itself (what active_set_solve passes)
        return program.check_variable(warm_start).clone(), None, {"warm_start": "variable"}
    raise TypeError(f"warm_start must be a Solution, a ParallelReLU or a (P, m, d') tensor Q, "
                    f"got {type(warm_start).__name__}")


class _Memory:
    """Peak memory of the solve: CUDA's allocator peak, or the process's peak RSS on the CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

    def report(self) -> dict:
        if self.device.type == "cuda":
            return {"peak_memory_bytes": int(torch.cuda.max_memory_allocated(self.device)),
                    "memory_method": "torch.cuda.max_memory_allocated (peak reset at solve start)"}
        # ru_maxrss is KiB on Linux: the process-wide peak, an upper bound on the solve's own use
        return {"peak_memory_bytes": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024,
                "memory_method": "getrusage ru_maxrss (process peak RSS, not reset per solve)"}


def solve_torch(program: RestrictedProgram, tol: Optional[float] = None, max_iter: Optional[int] = None,
                time_limit: float = float("inf"), warm_start=None, dtype: Optional[torch.dtype] = None,
                verbose: bool = False, method: str = "auto") -> Solution:
    """Solve ``program`` on its device (module docstring: methods, stopping rule, statuses).

    Args:
        tol: relative certified gap and feasibility tolerance (default 1e-6 for ``"ipm"``,
            1e-3 for ``"alm"``, whose tail is slow).
        max_iter: interior-point iterations (default 100) or FISTA iterations for ``"alm"``
            (default 50000; each is one forward and one adjoint pass).
        time_limit: wall seconds.
        warm_start: a :class:`Solution` over the same patterns (Q and multipliers reused), the
            :class:`ParallelReLU` the patterns came from (q_kj = w3_k w2_kj W1_k[:, j]), or a
            tensor Q (P, m, d'). Used by ``"alm"``; the interior point starts from its own
            central point and ignores it.
        dtype: working precision of ``"alm"`` (default: the program's). ``torch.float32`` halves
            memory and is much faster on GPUs; the certified gap then bottoms out near 1e-6.
            The interior point always works in float64.
        verbose: print progress.
        method: ``"auto"`` (:func:`choose_method`), ``"ipm"`` or ``"alm"``.

    Returns:
        a :class:`Solution` with multipliers, and in ``info``: ``method``, ``gap`` (relative
        certified gap of the last check), ``lower_bound``, ``violation_rel``, ``peak_memory_bytes``
        and ``memory_method``, plus method-specific counters.
    """
    if not isinstance(program, RestrictedProgram):
        raise TypeError(f"program must be a RestrictedProgram, got {type(program).__name__}")
    _check_options(tol, max_iter, time_limit, dtype, method)
    start = time.perf_counter()
    memory = _Memory(program.device)
    if method == "auto":
        method = choose_method(program)
    max_iter = max_iter or DEFAULT_MAX_ITER[method]
    tol = DEFAULT_TOL[method] if tol is None else tol
    warm = None
    if warm_start is not None:
        if method == "alm":
            warm = warm_start_variable(program, warm_start)  # a bad warm start is a user error: raise
        elif not isinstance(warm_start, (Solution, ParallelReLU, torch.Tensor)):
            raise TypeError(f"warm_start must be a Solution, a ParallelReLU or a (P, m, d') tensor Q, "
                            f"got {type(warm_start).__name__}")
    info = {"method": method, "tol": tol, "device": str(program.device)}
    try:
        if method == "ipm":
            info["dtype"] = "float64"
            if warm_start is not None:
                info["warm_start"] = "ignored (interior point)"
            outcome, Q, mult, iters, extra = _ipm(program, tol, max_iter, time_limit, verbose, start)
        else:
            dtype = dtype or program.dtype
            info["dtype"] = str(dtype).replace("torch.", "")
            outcome, Q, mult, iters, extra = _alm(program, tol, max_iter, time_limit, warm, dtype,
                                                  verbose, start)
    except Exception as exc:  # a failed solve is a status, never an exception downstream
        outcome, Q, mult, iters, extra = "error", program.zeros(), None, 0, {"error": repr(exc)}
    info.update(extra)
    info.update(memory.report())
    if mult is not None:
        mu1, mu2 = mult
        finite = bool(torch.isfinite(mu1).all()) and (mu2 is None or bool(torch.isfinite(mu2).all()))
        # non-finite multipliers certify nothing: hand back none rather than poison a certificate
        mult = (mu1.to(program.dtype), None if mu2 is None else mu2.to(program.dtype)) if finite else None
    return Solution.from_variable(
        program, Q.to(program.dtype), status=STATUS_MAP[outcome], seconds=time.perf_counter() - start,
        iterations=iters, solver="torch", multipliers=mult, info=info,
    )


# ---------------------------------------------------------------------------------------------
# shared: the certificate used as the stopping rule
# ---------------------------------------------------------------------------------------------
def _min_row(R1, R2) -> float:
    worst = float(R1.min()) if R1.numel() else 0.0
    if R2 is not None and R2.numel():
        worst = min(worst, float(R2.min()))
    return worst


def _certificate(wp: RestrictedProgram, Q, mu1, mu2, y64, y_scale, pred=None, worst=None) -> dict:
    """Primal J, cone violation, and the MATH.md section 5 lower bound from v = y - A Q and mu.

    ``pred`` (A Q) and ``worst`` (min G Q) may be passed when already computed.
    """
    if pred is None or worst is None:
        pred, R1, R2 = wp.forward(Q)
        worst = _min_row(R1, R2)
    viol = max(0.0, -worst)
    v = y64 - pred.double()
    J = float(0.5 * v.square().sum() + wp.beta * Q.double().norm(dim=2).sum())
    bound = float(pattern_bounds(wp, v.to(wp.dtype), mu1, mu2).max())
    lb = lower_bound(v @ y64, v @ v, wp.beta, bound).value
    gap = relative_gap(J, lb)
    feas_scale = max(y_scale, float(pred.abs().max()))
    return {"primal": J, "lower_bound": lb, "gap": gap, "violation_rel": viol / feas_scale,
            "dual_infeasibility": bound / wp.beta - 1.0}


def _converged(cert: dict, tol: float) -> bool:
    return cert["gap"] <= tol and cert["violation_rel"] <= tol


# ---------------------------------------------------------------------------------------------
# "alm": augmented Lagrangian + FISTA, matrix-free
# ---------------------------------------------------------------------------------------------
def _power_norm_sq(apply, shape, like: torch.Tensor, iters: int = POWER_ITERATIONS) -> float:
    """Largest eigenvalue of a PSD operator (||A||^2 for apply = A^T A) by power iteration."""
    gen = torch.Generator(device="cpu").manual_seed(7)
    x = torch.randn(shape, generator=gen, dtype=torch.float64).to(device=like.device, dtype=like.dtype)
    x /= x.norm()
    lam = 0.0
    for _ in range(iters):
        z = apply(x)
        new = float(z.norm())
        if not math.isfinite(new) or new == 0.0:
            return new if math.isfinite(new) else float("nan")
        x = z / new
        if abs(new - lam) <= POWER_RTOL * new:
            return new
        lam = new
    return lam


def _group_prox(Z: torch.Tensor, threshold: float) -> torch.Tensor:
    """argmin_Q threshold sum ||q_pj|| + 1/2 ||Q - Z||^2: the group soft-threshold."""
    norms = Z.norm(dim=2, keepdim=True)
    scale = (1.0 - threshold / norms.clamp_min(torch.finfo(Z.dtype).tiny)).clamp_min(0.0)
    return Z * scale


def _penalty(mu1, mu2, R1, R2, rho) -> float:
    """1/(2 rho) ||max(0, mu - rho G Q)||^2 from the rows R = G Q, in pattern chunks (no (P, n, m)
    temporary)."""
    total = 0.0
    step = max(1, ENTRY_CHUNK // max(1, R1[0].numel()))
    for a in range(0, R1.shape[0], step):
        total += float(torch.addcmul(mu1[a:a + step], R1[a:a + step], torch.tensor(-rho, dtype=R1.dtype,
                                     device=R1.device)).clamp_(min=0).square().sum())
    if R2 is not None:
        total += float((mu2 - rho * R2).clamp_(min=0).square().sum())
    return total / (2 * rho)


@torch.no_grad()
def _alm(program, tol, max_iter, time_limit, warm, dtype, verbose, start):
    wp = program.with_dtype(dtype)
    beta = wp.beta
    dev = wp.device
    y64 = program.y.double()
    y_scale = max(float(y64.abs().max()), torch.finfo(torch.float64).tiny)

    # rough norms suffice: they set rho's scale and the first step; backtracking does the rest
    La = _power_norm_sq(lambda x: wp.adjoint(wp.predict(x)), wp.shape, wp.features, iters=POWER_ITERATIONS)
    Lg = _power_norm_sq(lambda x: wp.adjoint(None, *wp.cone_rows(x)), wp.shape, wp.features, iters=POWER_ITERATIONS)
    setup_seconds = time.perf_counter() - start
    if not (math.isfinite(La) and math.isfinite(Lg)):
        return "nan", program.zeros(), None, 0, {"error": "operator norm estimate is not finite"}
    if La == 0.0 and Lg == 0.0:  # X = 0: A = G = 0 and Q = 0 is optimal
        La = Lg = 1.0
    La, Lg = max(La, 1e-300), max(Lg, 1e-300)
    # rho in units of ||A||^2 / ||G||^2 puts the penalty's curvature on the data term's scale
    rho = RHO_START * La / Lg
    rho_max = rho * RHO_MAX_FACTOR

    if warm is not None:
        Q, mult, winfo = warm
        Q = Q.to(dtype).clone()
    else:
        Q, mult, winfo = wp.zeros(), None, {}
    if mult is not None:
        mu1 = mult[0].to(dtype).clone()
        mu2 = None if mult[1] is None else mult[1].to(dtype).clone()
    else:
        mu1 = torch.zeros(wp.P, wp.n, wp.m, dtype=dtype, device=dev)
        mu2 = torch.zeros(wp.P, wp.n, dtype=dtype, device=dev) if wp.depth == 3 else None

    def slot():
        return [torch.empty_like(mu1), None if mu2 is None else torch.empty_like(mu2)]

    # Rows G Q of the current iterate, the previous one, the trial point and the extrapolated
    # point: A and G are linear, so the extrapolated point's rows are a combination of stored
    # ones and each iteration costs one forward pass (at the trial point) and one adjoint.
    sQ, sQp, sN, sY = slot(), slot(), slot(), slot()
    elem = torch.finfo(dtype).bits // 8
    rows = mu1.numel() + (0 if mu2 is None else mu2.numel())
    extra = dict(winfo)
    extra["buffer_bytes"] = int(5 * elem * rows + 6 * elem * Q.numel())
    extra["lipschitz"] = {"A": La, "G": Lg}
    extra["setup_seconds"] = setup_seconds  # the power iterations, before the first FISTA step

    def forward(Qx, sl):
        pred, _, _ = wp.forward(Qx, out1=sl[0], out2=sl[1])
        return pred

    predQ = forward(Q, sQ)
    L = La
    slack = 100 * torch.finfo(dtype).eps
    eps = 1e-2
    iters = passes = 0
    passes += 1
    outer = 0
    prev_change = math.inf
    last_good = Q.clone()
    last: dict = {}

    def finish(outcome, Qout):
        extra.update(last)
        extra.update({"outer_iterations": outer, "rho": rho, "passes": passes})
        return outcome, Qout, (mu1, mu2), iters, extra

    while True:
        # ---- inner: FISTA with backtracking and adaptive restart on L_rho(.; mu) -----------
        Qp, predQp = Q, predQ
        t, mom = 1.0, 0.0
        outcome = None
        inner_start = iters
        while True:
            Y = Q + mom * (Q - Qp) if mom else Q
            predY = predQ + mom * (predQ - predQp) if mom else predQ
            for a, b, c in zip(sY, sQ, sQp):
                if a is not None:
                    a.copy_(b)
                    if mom:
                        a.mul_(1 + mom).add_(c, alpha=-mom)
                    a.mul_(-rho).add_(mu1 if a.dim() == 3 else mu2).clamp_(min=0)  # mu_hat at Y
            rY = wp.y - predY
            fY = 0.5 * float(rY @ rY) + (float(sY[0].square().sum()) + (
                float(sY[1].square().sum()) if sY[1] is not None else 0.0)) / (2 * rho)
            g = -wp.adjoint(rY, sY[0], sY[1])
            iters += 1
            passes += 1
            L_prev = L
            L = max(L * BACKTRACK_DECREASE, 1e-300)
            for _ in range(BACKTRACK_MAX):
                Qn = _group_prox(Y - g / L, beta / L)
                predN = forward(Qn, sN)
                passes += 1
                D = Qn - Y
                rN = wp.y - predN
                fN = 0.5 * float(rN @ rN) + _penalty(mu1, mu2, sN[0], sN[1], rho)
                model = fY + float((g * D).sum()) + 0.5 * L * float((D * D).sum())
                # fY and fN come from different roundings of the same rows: allow for it
                if fN <= model + slack * abs(fY) or not math.isfinite(fN):
                    break
                L *= 2.0
            move = Qn - Q
            restart = float((D * move).sum()) < 0  # O'Donoghue-Candes gradient restart
            # Scheinberg-Goldfarb-Bai momentum for a step size that may shrink or grow
            t_new = (1 + math.sqrt(1 + 4 * (L / L_prev) * t * t)) / 2
            mom, t = (0.0, 1.0) if restart else ((t - 1) / t_new, t_new)
            Qp, predQp, Q, predQ = Q, predQ, Qn, predN
            sQp, sQ, sN = sQ, sN, sQp
            res = float(D.norm(dim=2).max()) * L / beta
            if not (math.isfinite(res) and math.isfinite(fN)):
                outcome = "nan"
                break
            inner_solved = res <= eps
            if inner_solved or iters - inner_start >= INNER_MAX_ITER:
                break
            if iters >= max_iter:
                outcome = "max_iter"
                break
            if time.perf_counter() - start >= time_limit:
                outcome = "time_limit"
                break
        if outcome == "nan":
            return finish("nan", last_good)

        # ---- outer: multiplier step and the certificate ------------------------------------
        outer += 1
        worst = _min_row(*sQ)
        change = 0.0
        for new, old, rows_ in ((sN[0], mu1, sQ[0]), (sN[1], mu2, sQ[1])):
            if new is not None:
                torch.add(old, rows_, alpha=-rho, out=new).clamp_(min=0)  # max(0, mu - rho G Q)
                change = max(change, float((new - old).abs().max()) if new.numel() else 0.0)
        mu1, sN[0] = sN[0], mu1
        if mu2 is not None:
            mu2, sN[1] = sN[1], mu2
        change /= rho * y_scale
        cert = _certificate(wp, Q, mu1, mu2, y64, y_scale, pred=predQ, worst=worst)
        passes += 1
        if not (math.isfinite(cert["primal"]) and math.isfinite(cert["gap"])):
            return finish("nan", last_good)
        last_good = Q.clone()
        last = cert
        if verbose:
            print(f"[torch/alm] outer {outer:3d} iters {iters:6d} J {cert['primal']:.10g} "
                  f"LB {cert['lower_bound']:.10g} gap {cert['gap']:.2e} viol {cert['violation_rel']:.2e} "
                  f"rho {rho:.3g} L/La {L / La:.3g} eps {eps:.1e} t {time.perf_counter() - start:.2f}s")
        if _converged(cert, tol):
            return finish("converged", Q)
        if outcome is not None:
            return finish(outcome, Q)
        if iters >= max_iter:
            return finish("max_iter", Q)
        if time.perf_counter() - start >= time_limit:
            return finish("time_limit", Q)
        # rho and eps move only after an inner solve that met eps: a capped one says nothing
        # about how well the current rho works
        if inner_solved:
            if change > 0.25 * prev_change and rho < rho_max:
                rho = min(rho * RHO_GROWTH, rho_max)
            prev_change = change
            eps = max(eps / 5, tol / 10)


# ---------------------------------------------------------------------------------------------
# "ipm": primal-dual interior point (NT scaling, Mehrotra), dense Newton systems
# ---------------------------------------------------------------------------------------------
# Second-order cone helpers on batches u of shape (G, k): u = (u0, u1), J = diag(1, -I).
def _jdot(u, v):
    return u[:, 0] * v[:, 0] - (u[:, 1:] * v[:, 1:]).sum(dim=1)


def _soc_prod(u, v):
    """The Jordan product u o v = (u.v, u0 v1 + v0 u1)."""
    return torch.cat([(u * v).sum(dim=1, keepdim=True), u[:, :1] * v[:, 1:] + v[:, :1] * u[:, 1:]], dim=1)


def _soc_ldiv(lam, v):
    """w with lam o w = v (the inverse of the arrow matrix of lam)."""
    det = _jdot(lam, lam)
    w0 = (lam[:, 0] * v[:, 0] - (lam[:, 1:] * v[:, 1:]).sum(dim=1)) / det
    w1 = (v[:, 1:] - lam[:, 1:] * w0[:, None]) / lam[:, :1]
    return torch.cat([w0[:, None], w1], dim=1)


def _soc_step(u, du):
    """Largest alpha with u + alpha du in the cone (u interior), per cone; inf when unbounded."""
    a = _jdot(du, du)
    b = 2 * _jdot(u, du)
    c = _jdot(u, u)
    disc = b * b - 4 * a * c
    denom = -b + torch.sqrt(disc.clamp_min(0))
    # 2c / (-b + sqrt(disc)) is the smallest positive root in every case (a > 0, < 0, = 0)
    alpha = torch.where((disc >= 0) & (denom > 0), 2 * c / denom.clamp_min(1e-300),
                        torch.full_like(c, math.inf))
    return torch.where(alpha > 0, alpha, torch.full_like(c, math.inf))


def _nn_step(u, du):
    neg = du < 0
    if not bool(neg.any()):
        return math.inf
    return float((-u[neg] / du[neg]).min())


def _nt_scaling(s, z):
    """Nesterov-Todd scaling of each cone: W = eta * Wbar with W z = W^-1 s (= lambda)."""
    ns = torch.sqrt(_jdot(s, s))
    nz = torch.sqrt(_jdot(z, z))
    sb = s / ns[:, None]
    zb = z / nz[:, None]
    gamma = torch.sqrt((1 + (sb * zb).sum(dim=1)) / 2)
    Jzb = torch.cat([zb[:, :1], -zb[:, 1:]], dim=1)
    wb = (sb + Jzb) / (2 * gamma[:, None])
    k = s.shape[1]
    Wb = torch.empty(s.shape[0], k, k, dtype=s.dtype, device=s.device)
    Wb[:, 0, 0] = wb[:, 0]
    Wb[:, 0, 1:] = wb[:, 1:]
    Wb[:, 1:, 0] = wb[:, 1:]
    Wb[:, 1:, 1:] = torch.eye(k - 1, dtype=s.dtype, device=s.device) + \
        wb[:, 1:, None] * wb[:, None, 1:] / (1 + wb[:, 0])[:, None, None]
    eta = torch.sqrt(ns / nz)
    return Wb, eta


def _bmv(M, v):
    return torch.bmm(M, v[:, :, None])[:, :, 0]


def _flip(M):
    """J M J for a batch of (k, k) matrices."""
    out = M.clone()
    out[:, 0, 1:] *= -1
    out[:, 1:, 0] *= -1
    return out


@torch.no_grad()
def _ipm(program, tol, max_iter, time_limit, verbose, start):
    wp = program.with_dtype(torch.float64)
    P, m, d = wp.shape
    n, N, Gn, k = wp.n, wp.num_variables, wp.P * wp.m, wp.d + 1
    n1 = P * n * m
    depth3 = wp.depth == 3
    C = n1 + (P * n if depth3 else 0)
    dev, dt = wp.device, torch.float64
    beta = wp.beta
    y64 = wp.y
    y_scale = max(float(y64.abs().max()), torch.finfo(dt).tiny)

    H = wp.prediction_gram()
    c = torch.cat([-wp.predict_adjoint(wp.y).reshape(-1), torch.full((Gn,), beta, dtype=dt, device=dev)])
    soc_idx = torch.cat([N + torch.arange(Gn, device=dev)[:, None],
                         torch.arange(N, device=dev).view(Gn, d)], dim=1)  # (t_pj, q_pj) in x
    pat_idx = torch.arange(N, device=dev).view(P, m * d)
    pat_I, pat_J = pat_idx[:, :, None].expand(P, m * d, m * d), pat_idx[:, None, :].expand(P, m * d, m * d)
    soc_I, soc_J = soc_idx[:, :, None].expand(Gn, k, k), soc_idx[:, None, :].expand(Gn, k, k)

    def split(z1):
        return z1[:n1].view(P, n, m), (z1[n1:].view(P, n) if depth3 else None)

    def A_apply(x):
        """A_con x for the constraints A_con x + s = 0: (-G q, -(t_pj, q_pj))."""
        R1, R2 = wp.cone_rows(x[:N].view(P, m, d))
        a1 = -(torch.cat([R1.reshape(-1), R2.reshape(-1)]) if depth3 else R1.reshape(-1))
        return a1, -x[soc_idx]

    def AT_apply(z1, z2):
        out = torch.zeros(N + Gn, dtype=dt, device=dev)
        out[:N] = -wp.adjoint(None, *split(z1)).reshape(-1)
        out.index_add_(0, soc_idx.reshape(-1), -z2.reshape(-1))
        return out

    def P_apply(x):
        out = torch.zeros_like(x)
        out[:N] = H @ x[:N]
        return out

    def factor(w1, Winv2):
        M = torch.zeros(N + Gn, N + Gn, dtype=dt, device=dev)
        M[:N, :N] = H
        M[pat_I, pat_J] += wp.cone_gram(*split(w1))
        M[soc_I, soc_J] += Winv2
        reg = 1e-12 * float(M.diagonal().abs().max())
        for _ in range(6):
            Lc, info = torch.linalg.cholesky_ex(M + reg * torch.eye(N + Gn, dtype=dt, device=dev))
            if int(info) == 0:
                break
            reg *= 100
        else:
            raise FloatingPointError("the interior-point Newton system is not positive definite")

        def chol_solve(rhs):
            # two triangular solves: measured 10-300x faster than cholesky_solve for one column
            w = torch.linalg.solve_triangular(Lc, rhs[:, None], upper=False)
            return torch.linalg.solve_triangular(Lc.T, w, upper=True)[:, 0]

        def solve(rhs):
            x = chol_solve(rhs)
            for _ in range(2):  # iterative refinement against the unregularised system
                x += chol_solve(rhs - M @ x)
            return x
        return solve

    # ---- initial point (coneqp): minimise 1/2 x'Px + c'x + 1/2 ||A_con x||^2, shift into cones
    eye_k = torch.eye(k, dtype=dt, device=dev).expand(Gn, k, k)
    x = factor(torch.ones(C, dtype=dt, device=dev), eye_k)(-c)
    a1, a2 = A_apply(x)
    s1, s2 = -a1, -a2
    z1, z2 = a1.clone(), a2.clone()

    def shift(u1, u2):
        alpha = max(float((-u1).max()) if C else -1.0,
                    float((u2[:, 1:].norm(dim=1) - u2[:, 0]).max()))
        if alpha >= -1e-8:
            u1 = u1 + (1 + alpha)
            u2 = u2.clone()
            u2[:, 0] += 1 + alpha
        return u1, u2

    s1, s2 = shift(s1, s2)
    z1, z2 = shift(z1, z2)
    degree = C + Gn
    extra = {"buffer_bytes": int(8 * ((N + Gn) ** 2 * 3 + 6 * C + n * N))}
    outcome = "max_iter"
    small_steps = 0
    it = 0
    cert: dict = {}
    best, best_key, best_it = None, None, 0
    # aim ten times below tol while progress lasts; accept tol (see the end)
    target = tol / 10
    mus: list = []
    for it in range(1, max_iter + 1):
        Q = x[:N].view(P, m, d)
        if not bool(torch.isfinite(x).all() & torch.isfinite(z1).all() & torch.isfinite(z2).all()):
            outcome = "nan"
            break
        cert = _certificate(wp, Q, *split(z1), y64, y_scale)
        # keep the best-certified iterate: near the end rounding can make a step worse
        key = (cert["violation_rel"] <= tol, -cert["gap"])
        if best is None or key > best_key:
            if best is None or cert["gap"] < 0.5 * best[0]["gap"]:
                best_it = it
            best, best_key = (cert, x.clone(), z1.clone()), key
        if verbose:
            gapmu = (float(s1 @ z1) + float((s2 * z2).sum())) / degree
            print(f"[torch/ipm] it {it:3d} J {cert['primal']:.12g} LB {cert['lower_bound']:.12g} "
                  f"gap {cert['gap']:.2e} viol {cert['violation_rel']:.2e} mu {gapmu:.2e} "
                  f"t {time.perf_counter() - start:.2f}s")
        if _converged(cert, target):
            break
        if time.perf_counter() - start >= time_limit:
            outcome = "time_limit"
            break
        if it == max_iter:
            break
        gapmu = (float(s1 @ z1) + float((s2 * z2).sum())) / degree
        mus.append(gapmu)
        if it - best_it >= 6 and gapmu > 0.5 * mus[-7]:
            # neither the certified gap nor the complementarity halved in 6 steps: rounding
            # has the last word
            outcome = "stalled"
            break
        rx = P_apply(x) + c + AT_apply(z1, z2)
        a1, a2 = A_apply(x)
        rz1, rz2 = a1 + s1, a2 + s2
        mu = (float(s1 @ z1) + float((s2 * z2).sum())) / degree
        # scaling: nonnegative rows W = diag(sqrt(s/z)); cones W = eta * Wbar
        w1 = torch.sqrt(s1 / z1)
        lam1 = torch.sqrt(s1 * z1)
        Wb, eta = _nt_scaling(s2, z2)
        lam2 = eta[:, None] * _bmv(Wb, z2)
        Wb2 = torch.bmm(Wb, Wb)
        Winv2 = _flip(Wb2) / (eta * eta)[:, None, None]
        try:
            solve = factor(z1 / s1, Winv2)
        except FloatingPointError:
            outcome = "stalled"
            break

        def direction(ds1, ds2):
            u1 = w1 * (ds1 / lam1)  # W (lambda \ ds)
            u2 = eta[:, None] * _bmv(Wb, _soc_ldiv(lam2, ds2))
            h1, h2 = rz1 + u1, rz2 + u2
            dx = solve(-rx - AT_apply((z1 / s1) * h1, _bmv(Winv2, h2)))
            b1, b2 = A_apply(dx)
            dz1 = (z1 / s1) * (b1 + h1)
            dz2 = _bmv(Winv2, b2 + h2)
            return dx, u1 - (s1 / z1) * dz1, dz1, u2 - (eta * eta)[:, None] * _bmv(Wb2, dz2), dz2

        def max_step(ds1, dz1, ds2, dz2):
            return min(_nn_step(s1, ds1), _nn_step(z1, dz1),
                       float(_soc_step(s2, ds2).min()), float(_soc_step(z2, dz2).min()))

        # predictor (affine scaling) step
        dxa, ds1a, dz1a, ds2a, dz2a = direction(-lam1 * lam1, -_soc_prod(lam2, lam2))
        alpha_aff = alpha = min(1.0, max_step(ds1a, dz1a, ds2a, dz2a))
        gap_aff = (float((s1 + alpha * ds1a) @ (z1 + alpha * dz1a))
                   + float(((s2 + alpha * ds2a) * (z2 + alpha * dz2a)).sum()))
        sigma = min(1.0, max(0.0, gap_aff / (mu * degree))) ** 3
        # corrector: second-order term (W^-1 ds_a) o (W dz_a) and centring sigma mu e
        ds1 = -lam1 * lam1 - (ds1a / w1) * (w1 * dz1a) + sigma * mu
        Winv_ds2a = _bmv(_flip(Wb), ds2a) / eta[:, None]
        ds2 = -_soc_prod(lam2, lam2) - _soc_prod(Winv_ds2a, eta[:, None] * _bmv(Wb, dz2a))
        ds2[:, 0] += sigma * mu
        dx, ds1, dz1, ds2, dz2 = direction(ds1, ds2)
        alpha = min(1.0, 0.99 * max_step(ds1, dz1, ds2, dz2))
        if alpha < 0.1:
            # the second-order correction can point out of the cones on a badly centred iterate:
            # fall back to a centring step (no corrector, sigma >= 1/2)
            sigma = max(sigma, 0.5)
            ds2c = -_soc_prod(lam2, lam2)
            ds2c[:, 0] += sigma * mu
            step = direction(-lam1 * lam1 + sigma * mu, ds2c)
            alpha_c = min(1.0, 0.99 * max_step(*step[1:]))
            if alpha_c > alpha:
                (dx, ds1, dz1, ds2, dz2), alpha = step, alpha_c
        if verbose and verbose > 1:
            print(f"      alpha {alpha:.3f} sigma {sigma:.2e} alpha_aff {alpha_aff:.3f}")
        small_steps = small_steps + 1 if alpha < 1e-6 else 0
        if small_steps >= 3:
            outcome = "stalled"
            break
        x = x + alpha * dx
        s1, z1 = s1 + alpha * ds1, z1 + alpha * dz1
        s2, z2 = s2 + alpha * ds2, z2 + alpha * dz2

    if best is None:
        return outcome, program.zeros(), None, it, extra
    cert, x, z1 = best
    if _converged(cert, tol):
        outcome = "converged"
    Q = x[:N].view(P, m, d).clone()
    mu1, mu2 = split(z1.clamp_min(0))
    # An interior point leaves ~1e-7 patterns where the optimum has exact zeros (and, when 0 is
    # optimal, nothing else); a network rebuilt from them would need a branch for each. Zero
    # every pattern with t_p = sum_j ||q_pj|| below a threshold (whole patterns: 0 is in every
    # cone, so feasibility is kept), trying the largest threshold first (all patterns), and keep
    # the first that raises J by at most tol/10 relative and whose own residual still certifies
    # with mu to 10 tol. The lower bound from the interior-point residual stays valid for any Q,
    # so the reported gap uses the better of the two bounds; ``gap_own_residual`` is what
    # (returned Q, its residual, mu) certify on their own.
    t = Q.norm(dim=2).sum(dim=1)
    top = float(t.max()) if t.numel() else 0.0
    cert["gap_own_residual"] = cert["gap"]
    if top > 0:
        for level in (1.0, 1e-3, 1e-4, 1e-5, 1e-6):
            tiny = t <= level * top
            if not bool(tiny.any()):
                continue
            Qs = torch.where(tiny[:, None, None], torch.zeros_like(Q), Q)
            cs = _certificate(wp, Qs, mu1, mu2, y64, y_scale)
            if (cs["primal"] - cert["primal"] <= 0.1 * tol * abs(cert["primal"])
                    and cs["violation_rel"] <= max(cert["violation_rel"], tol)
                    and cs["gap"] <= max(cert["gap"], 10 * tol)):
                cs["gap_own_residual"] = cs["gap"]
                if cert["lower_bound"] > cs["lower_bound"]:
                    cs["lower_bound"] = cert["lower_bound"]
                    cs["gap"] = (cs["primal"] - cs["lower_bound"]) / max(abs(cs["primal"]), 1e-300)
                Q, cert = Qs, cs
                extra["zeroed_patterns"] = int(tiny.sum())
                break
    if outcome in ("stalled", "max_iter", "time_limit") and _converged(cert, tol):
        outcome = "converged"
    extra.update(cert)
    extra["iterations"] = it
    return outcome, Q, (mu1.clone(), None if mu2 is None else mu2.clone()), it, extra


BACKEND = Backend.from_function(
    "torch", solve_torch,
    Capabilities(warm_start=True, multipliers=True, devices=("cpu", "cuda"), max_cone_entries=None,
                 exact=False),
    "matrix-free on the program's device (interior point small, augmented Lagrangian large)",
)
