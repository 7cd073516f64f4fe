"""``method="alm"``: matrix-free, first order, for large programs (the Fashion-MNIST scale).

An augmented Lagrangian on the cone rows only; the group norms stay in a prox:

    L_rho(Q; mu) = 1/2 ||y - A Q||^2 + beta sum ||q_pj|| + 1/(2 rho) ||max(0, mu - rho G Q)||^2

* inner loop: FISTA (Beck & Teboulle 2009) with backtracking that may also lengthen the step
  (Scheinberg, Goldfarb & Bai 2014; L shrinks 0.9x per iteration, doubles on a failed sufficient
  decrease test) and the gradient-based adaptive restart of O'Donoghue & Candes (2015).
  Gradient -(A^T r + G^T mu_hat), r = y - A Q, mu_hat = max(0, mu - rho G Q); prox = the group
  soft-threshold (zero groups come out exactly zero). The penalty's curvature rho G_J^T G_J only
  involves the rows J it currently acts on, so backtracking finds steps far longer than the
  global bound ||A||^2 + rho ||G||^2 would allow. A and G are linear, so the extrapolated
  point's A Y and G Y are combinations of stored rows: one iteration is one
  :meth:`RestrictedProgram.forward` pass at the trial point (A Q and G Q from one product X q)
  and one :meth:`RestrictedProgram.adjoint` pass (A^T r + G^T mu_hat from one product X^T W),
  plus one forward per failed backtracking test; both chunked over patterns on the device.
  Memory: five (P, n, m) row buffers (rows of the current, previous, trial and extrapolated
  points, and mu1; float32 at n = 60000, P = 40, m = 100: 5 x 0.96 GB), plus chunk temporaries
  and the (P, m, d') iterates. It stops when max_pj L ||Y_pj - Q+_pj|| <= eps beta or after
  ``INNER_MAX_ITER`` iterations (an inexact solve still moves mu, which the certificate needs).
* outer loop: mu <- max(0, mu - rho G Q) (Hestenes-Powell-Rockafellar; Birgin & Martinez,
  "Practical Augmented Lagrangian Methods", 2014). After an inner solve that met eps, rho grows
  2x when ||mu_new - mu||_inf / rho failed to fall 4x and eps shrinks 5x down to tol / 10.
  rho starts at 100 ||A||^2 / ||G||^2 (both norms from at most 15 power iterations).

First-order convergence on these programs is slow in the tail: the multipliers of zero groups
are large and far from unique, and at scale the multipliers, hence the certificate, lag far
behind the primal iterate (BENCHMARKS.md, "Fashion-MNIST scale"). Use it where the interior
point does not fit, and read its certified gap.
"""

from __future__ import annotations

import math
import time

import torch

from ...program import RestrictedProgram
from ...rows import ENTRY_CHUNK
from .certificate import certificate, converged, min_row
from .method import MethodOptions, MethodResult, Outcome

#: power iterations for ||A||^2 and ||G||^2 (stopping at 1 % change): they only set rho's scale
#: and the first step, and each costs a forward and an adjoint pass, as much as a FISTA iteration
POWER_ITERATIONS = 15
POWER_RTOL = 1e-2
#: FISTA iterations per multiplier step at most: an inexact inner solve still moves mu, which
#: the certificate needs, and an uncapped inner solve at a poor mu delays every update of mu
INNER_MAX_ITER = 200
BACKTRACK_MAX = 60
BACKTRACK_DECREASE = 0.9  # the step grows back by 1/0.9 per iteration when the curvature allows
# rho starts at RHO_START ||A||^2 / ||G||^2: the penalty's curvature then outweighs the data
# term's from the first step, so the rows are enforced early and rho seldom has to grow; the
# gentle growth factor keeps the inner problems from becoming ill conditioned at once.
RHO_START = 100.0
RHO_GROWTH = 2.0
RHO_MAX_FACTOR = 1e4


def power_norm_sq(apply, shape, like: torch.Tensor, iters: int = POWER_ITERATIONS) -> float:
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


def group_prox(Z: torch.Tensor, threshold: float) -> torch.Tensor:
    """argmin_Q threshold sum ||q_pj|| + 1/2 ||Q - Z||^2: the group soft-threshold."""
    norms = Z.norm(dim=2, keepdim=True)
    scale = (1.0 - threshold / norms.clamp_min(torch.finfo(Z.dtype).tiny)).clamp_min(0.0)
    return Z * scale


def penalty(mu1, mu2, R1, R2, rho) -> float:
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
def alm(program: RestrictedProgram, options: MethodOptions, warm, dtype: torch.dtype) -> MethodResult:
    """Run the augmented Lagrangian from ``warm`` (Q, multipliers or None, info) or zero, in
    ``dtype``; the certificate is computed in float64."""
    tol, max_iter, time_limit = options.tol, options.max_iter, options.time_limit
    verbose, start = options.verbose, options.start
    wp = program.with_dtype(dtype)
    beta = wp.beta
    dev = wp.device
    y64 = program.y.double()
    y_scale = max(float(y64.abs().max()), torch.finfo(torch.float64).tiny)

    # rough norms suffice: they set rho's scale and the first step; backtracking does the rest
    La = power_norm_sq(lambda x: wp.adjoint(wp.predict(x)), wp.shape, wp.features, iters=POWER_ITERATIONS)
    Lg = power_norm_sq(lambda x: wp.adjoint(None, *wp.cone_rows(x)), wp.shape, wp.features, iters=POWER_ITERATIONS)
    setup_seconds = time.perf_counter() - start
    if not (math.isfinite(La) and math.isfinite(Lg)):
        return MethodResult(Outcome.NAN, program.zeros(), None, 0, {"error": "operator norm estimate is not finite"})
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
        return MethodResult(outcome, Qout, (mu1, mu2), iters, extra)

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
                Qn = group_prox(Y - g / L, beta / L)
                predN = forward(Qn, sN)
                passes += 1
                D = Qn - Y
                rN = wp.y - predN
                fN = 0.5 * float(rN @ rN) + penalty(mu1, mu2, sN[0], sN[1], rho)
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
                outcome = Outcome.NAN
                break
            inner_solved = res <= eps
            if inner_solved or iters - inner_start >= INNER_MAX_ITER:
                break
            if iters >= max_iter:
                outcome = Outcome.MAX_ITER
                break
            if time.perf_counter() - start >= time_limit:
                outcome = Outcome.TIME_LIMIT
                break
        if outcome == Outcome.NAN:
            return finish(Outcome.NAN, last_good)

        # ---- outer: multiplier step and the certificate ------------------------------------
        outer += 1
        worst = min_row(*sQ)
        change = 0.0
        for new, old, rows_ in ((sN[0], mu1, sQ[0]), (sN[1], mu2, sQ[1])):
            if new is not None:
                torch.add(old, rows_, alpha=-rho, out=new).clamp_(min=0)  # max(0, mu - rho G Q)
                change = max(change, float((new - old).abs().max()) if new.numel() else 0.0)
        mu1, sN[0] = sN[0], mu1
        if mu2 is not None:
            mu2, sN[1] = sN[1], mu2
        change /= rho * y_scale
        cert = certificate(wp, Q, mu1, mu2, y64, y_scale, pred=predQ, worst=worst)
        passes += 1
        if not (math.isfinite(cert["primal"]) and math.isfinite(cert["gap"])):
            return finish(Outcome.NAN, last_good)
        last_good = Q.clone()
        last = cert
        if verbose:
            print(f"[torch/alm] outer {outer:3d} iters {iters:6d} J {cert['primal']:.10g} "
                  f"LB {cert['lower_bound']:.10g} gap {cert['gap']:.2e} viol {cert['violation_rel']:.2e} "
                  f"rho {rho:.3g} L/La {L / La:.3g} eps {eps:.1e} t {time.perf_counter() - start:.2f}s")
        if converged(cert, tol):
            return finish(Outcome.CONVERGED, Q)
        if outcome is not None:
            return finish(outcome, Q)
        if iters >= max_iter:
            return finish(Outcome.MAX_ITER, Q)
        if time.perf_counter() - start >= time_limit:
            return finish(Outcome.TIME_LIMIT, Q)
        # rho and eps move only after an inner solve that met eps: a capped one says nothing
        # about how well the current rho works
        if inner_solved:
            if change > 0.25 * prev_change and rho < rho_max:
                rho = min(rho * RHO_GROWTH, rho_max)
            prev_change = change
            eps = max(eps / 5, tol / 10)
