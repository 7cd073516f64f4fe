"""``method="ipm"``: a primal-dual interior point for small programs (dense Newton systems fit).

Nesterov-Todd scaling and Mehrotra's predictor-corrector, in the formulation of Vandenberghe,
"The CVXOPT linear and quadratic cone program solvers" (2010), section "coneqp": normal
equations (A^T A + G^T (Z/S) G + sum_pj W_pj^-2) dx = rhs, with A^T A
(:meth:`RestrictedProgram.prediction_gram`, once) and G^T (Z/S) G
(:meth:`~RestrictedProgram.cone_gram`, block diagonal over patterns) formed densely and
Cholesky-factored in float64 (static regularisation 1e-12 relative, two steps of iterative
refinement). When the corrected step is short (< 0.1) a pure centring step (sigma >= 1/2, no
corrector) is tried instead. It iterates towards tol/10 and returns the best-certified iterate;
it stops as stalled when neither the certified gap nor the complementarity halves in 6 steps
(on a degenerate program the float64 normal equations lose accuracy as the iterates near the
cone boundaries, and the gap stops improving). Its accuracy and speed against Clarabel:
``benchmarks/torch_vs_clarabel.py`` (BENCHMARKS.md, "Interior point on small programs").

Crossover (:mod:`.crossover`, on by default): once the certified gap is below CROSSOVER_GAP, and
after each further tenfold decrease, the iterate's support and face are solved exactly and
certified; the first certified result ends the run (CONVERGED). The static regularisation and the
dense Newton system are what limit the interior point alone to a gap of about 1e-6. A run that
stalls within FINISH_GAP ends with a crossover that may continue by the smoothed method when the
polish alone does not certify; a run stopped by its own budget (``max_iter``, ``time_limit``)
does not.

An interior point leaves tiny patterns where the optimum has zeros; they are then set to exactly
zero where that keeps the objective and the certificate (rule at the end of :func:`ipm`); a
pattern whose zeroing would cost more than tol/10 of J stays nonzero.
"""

from __future__ import annotations

import time

import torch

from ...duality import relative_gap
from ...program import RestrictedProgram
from .certificate import certificate, converged
from .crossover import Crossover, deadline_of
from .newton import LowRankNewton, use_low_rank
from .method import MethodOptions, MethodResult, Outcome
from .soc import bmv, flip, nn_step, nt_scaling, soc_ldiv, soc_prod, soc_step

#: the first crossover is tried once the certified gap is below this; each later one after the
#: gap has fallen by another CROSSOVER_STEP
CROSSOVER_GAP = 1e-5
CROSSOVER_STEP = 0.1
#: a run that stalls with its certified gap at most this ends with the crossover's continuation
FINISH_GAP = 1e-4


@torch.no_grad()
def ipm(program: RestrictedProgram, options: MethodOptions, crossover: bool = True) -> MethodResult:
    """Run the interior point from its own central start, in float64; with ``crossover``, finish
    on the face its iterates identify (:mod:`.crossover`)."""
    tol, max_iter, time_limit = options.tol, options.max_iter, options.time_limit
    verbose, start = options.verbose, options.start
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

    if use_low_rank(n, N + Gn):
        A_dense = torch.as_tensor(wp.prediction_matrix().toarray(), dtype=dt, device=dev)
        low_rank, H = LowRankNewton(wp, A_dense), None
    else:
        low_rank, H = None, wp.prediction_gram()
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
        out[:N] = H @ x[:N] if H is not None else A_dense.T @ (A_dense @ x[:N])
        return out

    def factor(w1, Winv2):
        if low_rank is not None:
            return low_rank.factor(wp.cone_gram(*split(w1)), Winv2)
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
            # two triangular solves with the factor (torch.cholesky_solve was slower for one column)
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
    outcome = Outcome.MAX_ITER
    small_steps = 0
    it = 0
    cert: dict = {}
    best, best_key, best_it = None, None, 0
    # aim ten times below tol while progress lasts; accept tol (see the end)
    target = tol / 10
    mus: list = []
    cross = Crossover(wp) if crossover else None
    cross_gap = max(CROSSOVER_GAP, tol)
    crossed = None
    deadline = deadline_of(start, time_limit)
    for it in range(1, max_iter + 1):
        Q = x[:N].view(P, m, d)
        if not bool(torch.isfinite(x).all() & torch.isfinite(z1).all() & torch.isfinite(z2).all()):
            outcome = Outcome.NAN
            break
        cert = certificate(wp, Q, *split(z1), y64, y_scale)
        # keep the best-certified iterate: near the end rounding can make a step worse
        key = (cert["violation_rel"] <= tol, -cert["gap"])
        if best is None or key > best_key:
            if best is None or cert["gap"] < 0.5 * best[0]["gap"]:
                best_it = it
            best, best_key, best_s1 = (cert, x.clone(), z1.clone()), key, s1.clone()
        if verbose:
            gapmu = (float(s1 @ z1) + float((s2 * z2).sum())) / degree
            print(f"[torch/ipm] it {it:3d} J {cert['primal']:.12g} LB {cert['lower_bound']:.12g} "
                  f"gap {cert['gap']:.2e} viol {cert['violation_rel']:.2e} mu {gapmu:.2e} "
                  f"t {time.perf_counter() - start:.2f}s")
        if converged(cert, target):
            break
        if cross is not None and cert["gap"] <= cross_gap and cert["violation_rel"] <= cross_gap:
            cross_gap = cert["gap"] * CROSSOVER_STEP
            crossed = cross(Q, z1 > s1, tol, deadline)
            if crossed is not None:
                break
        if time.perf_counter() - start >= time_limit:
            outcome = Outcome.TIME_LIMIT
            break
        if it == max_iter:
            break
        gapmu = (float(s1 @ z1) + float((s2 * z2).sum())) / degree
        mus.append(gapmu)
        if it - best_it >= 6 and gapmu > 0.5 * mus[-7]:
            # neither the certified gap nor the complementarity halved in 6 steps: rounding
            # has the last word
            outcome = Outcome.STALLED
            break
        rx = P_apply(x) + c + AT_apply(z1, z2)
        a1, a2 = A_apply(x)
        rz1, rz2 = a1 + s1, a2 + s2
        mu = (float(s1 @ z1) + float((s2 * z2).sum())) / degree
        # scaling: nonnegative rows W = diag(sqrt(s/z)); cones W = eta * Wbar
        w1 = torch.sqrt(s1 / z1)
        lam1 = torch.sqrt(s1 * z1)
        Wb, eta = nt_scaling(s2, z2)
        lam2 = eta[:, None] * bmv(Wb, z2)
        Wb2 = torch.bmm(Wb, Wb)
        Winv2 = flip(Wb2) / (eta * eta)[:, None, None]
        try:
            solve = factor(z1 / s1, Winv2)
        except FloatingPointError:
            outcome = Outcome.STALLED
            break

        def direction(ds1, ds2):
            u1 = w1 * (ds1 / lam1)  # W (lambda \ ds)
            u2 = eta[:, None] * bmv(Wb, soc_ldiv(lam2, ds2))
            h1, h2 = rz1 + u1, rz2 + u2
            dx = solve(-rx - AT_apply((z1 / s1) * h1, bmv(Winv2, h2)))
            b1, b2 = A_apply(dx)
            dz1 = (z1 / s1) * (b1 + h1)
            dz2 = bmv(Winv2, b2 + h2)
            return dx, u1 - (s1 / z1) * dz1, dz1, u2 - (eta * eta)[:, None] * bmv(Wb2, dz2), dz2

        def max_step(ds1, dz1, ds2, dz2):
            return min(nn_step(s1, ds1), nn_step(z1, dz1),
                       float(soc_step(s2, ds2).min()), float(soc_step(z2, dz2).min()))

        # predictor (affine scaling) step
        dxa, ds1a, dz1a, ds2a, dz2a = direction(-lam1 * lam1, -soc_prod(lam2, lam2))
        alpha_aff = alpha = min(1.0, max_step(ds1a, dz1a, ds2a, dz2a))
        gap_aff = (float((s1 + alpha * ds1a) @ (z1 + alpha * dz1a))
                   + float(((s2 + alpha * ds2a) * (z2 + alpha * dz2a)).sum()))
        sigma = min(1.0, max(0.0, gap_aff / (mu * degree))) ** 3
        # corrector: second-order term (W^-1 ds_a) o (W dz_a) and centring sigma mu e
        ds1 = -lam1 * lam1 - (ds1a / w1) * (w1 * dz1a) + sigma * mu
        Winv_ds2a = bmv(flip(Wb), ds2a) / eta[:, None]
        ds2 = -soc_prod(lam2, lam2) - soc_prod(Winv_ds2a, eta[:, None] * bmv(Wb, dz2a))
        ds2[:, 0] += sigma * mu
        dx, ds1, dz1, ds2, dz2 = direction(ds1, ds2)
        alpha = min(1.0, 0.99 * max_step(ds1, dz1, ds2, dz2))
        if alpha < 0.1:
            # the second-order correction can point out of the cones on a badly centred iterate:
            # fall back to a centring step (no corrector, sigma >= 1/2)
            sigma = max(sigma, 0.5)
            ds2c = -soc_prod(lam2, lam2)
            ds2c[:, 0] += sigma * mu
            step = direction(-lam1 * lam1 + sigma * mu, ds2c)
            alpha_c = min(1.0, 0.99 * max_step(*step[1:]))
            if alpha_c > alpha:
                (dx, ds1, dz1, ds2, dz2), alpha = step, alpha_c
        if verbose and verbose > 1:
            print(f"      alpha {alpha:.3f} sigma {sigma:.2e} alpha_aff {alpha_aff:.3f}")
        small_steps = small_steps + 1 if alpha < 1e-6 else 0
        if small_steps >= 3:
            outcome = Outcome.STALLED
            break
        x = x + alpha * dx
        s1, z1 = s1 + alpha * ds1, z1 + alpha * dz1
        s2, z2 = s2 + alpha * ds2, z2 + alpha * dz2

    if best is None:
        return MethodResult(outcome, program.zeros(), None, it, extra)
    cert, x, z1 = best
    if cross is not None:
        if crossed is None and not converged(cert, target) and time.perf_counter() < deadline:
            # a stall close to the optimum is the rounding limit of the normal equations, not a
            # budget: there the crossover may continue with the smoothed method (.crossover)
            finish = outcome == Outcome.STALLED and cert["gap"] <= FINISH_GAP
            crossed = cross(x[:N].view(P, m, d), z1 > best_s1, tol, deadline, finish=finish)
        extra["crossover_attempts"] = cross.attempts
        if crossed is not None:
            Qc, mu1c, mu2c = crossed
            cc = certificate(wp, Qc, mu1c, mu2c, y64, y_scale)
            if converged(cc, tol) and cc["gap"] <= cert["gap"]:
                extra["crossover"] = True
                cc["gap_own_residual"] = cc["gap"]
                extra.update(cc)
                extra["iterations"] = it
                return MethodResult(Outcome.CONVERGED, Qc, (mu1c, mu2c), it, extra)
    if converged(cert, tol):
        outcome = Outcome.CONVERGED
    Q = x[:N].view(P, m, d).clone()
    mu1, mu2 = split(z1.clamp_min(0))
    Q, cert, zeroed = _zero_tiny_patterns(wp, Q, cert, mu1, mu2, y64, y_scale, tol)
    if zeroed:
        extra["zeroed_patterns"] = zeroed
    if outcome in (Outcome.STALLED, Outcome.MAX_ITER, Outcome.TIME_LIMIT) and converged(cert, tol):
        outcome = Outcome.CONVERGED
    extra.update(cert)
    extra["iterations"] = it
    return MethodResult(outcome, Q, (mu1.clone(), None if mu2 is None else mu2.clone()), it, extra)


def _zero_tiny_patterns(wp: RestrictedProgram, Q, cert: dict, mu1, mu2, y64, y_scale, tol):
    """(Q, certificate, number of patterns zeroed) after zeroing the patterns an interior point
    leaves tiny where the optimum has exact zeros.

    A network rebuilt from such patterns would need a branch for each (and, when 0 is optimal,
    they are all there is). Every pattern with t_p = sum_j ||q_pj|| below a threshold is zeroed
    (whole patterns: 0 is in every cone, so feasibility is kept), trying the largest threshold
    first (all patterns); the first that raises J by at most tol/10 relative and whose own
    residual still certifies with mu to 10 tol is kept. The lower bound from the interior-point
    residual stays valid for any Q, so the reported gap uses the better of the two bounds;
    ``gap_own_residual`` is what (returned Q, its residual, mu) certify on their own.
    """
    t = Q.norm(dim=2).sum(dim=1)
    top = float(t.max()) if t.numel() else 0.0
    cert["gap_own_residual"] = cert["gap"]
    if top > 0:
        for level in (1.0, 1e-3, 1e-4, 1e-5, 1e-6):
            tiny = t <= level * top
            if not bool(tiny.any()):
                continue
            Qs = torch.where(tiny[:, None, None], torch.zeros_like(Q), Q)
            cs = certificate(wp, Qs, mu1, mu2, y64, y_scale)
            if (cs["primal"] - cert["primal"] <= 0.1 * tol * abs(cert["primal"])
                    and cs["violation_rel"] <= max(cert["violation_rel"], tol)
                    and cs["gap"] <= max(cert["gap"], 10 * tol)):
                cs["gap_own_residual"] = cs["gap"]
                if cert["lower_bound"] > cs["lower_bound"]:
                    cs["lower_bound"] = cert["lower_bound"]
                    cs["gap"] = relative_gap(cs["primal"], cs["lower_bound"])
                return Qs, cs, int(tiny.sum())
    return Q, cert, 0
