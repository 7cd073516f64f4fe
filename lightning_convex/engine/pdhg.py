"""Restarted primal-dual hybrid gradient (PDHG) on the restricted program: the measured alternative.

The saddle-point form of the program (MATH.md section 3) in whitened coordinates (:mod:`.operators`):

    min_Z max_{w, mu >= 0}  h(Z) + w . (A Z - y) - 1/2 ||w||^2 - mu . G Z,    h = beta sum ||a * z_pj||

(w = -v at the optimum, v the residual). Chambolle & Pock (2011) with one step size per block:

    Z+  = prox_{tau h}(Z - tau (A^T w - G^T mu))                 (:mod:`.prox`)
    w+  = (w + sigma_w (A (2 Z+ - Z) - y)) / (1 + sigma_w)
    mu+ = max(0, mu - sigma_mu G (2 Z+ - Z))                      (mu >= 0 at every iterate)

with tau = eta / omega, sigma_w = eta omega / ||A||^2, sigma_mu = eta omega / ||G||^2 (||G||^2
bounded by :meth:`Operators.norm_bounds`, ||A||^2 estimated by power steps) and eta < 1 / sqrt(2),
so the block-scaled operator has norm below one. PDLP-style restarts (Applegate et al. 2021): every RESTART_EVERY
iterations the normalised fixed-point residual of the current point and of the average since
the last restart are compared; the iteration restarts from the better one when it fell by
RESTART_SUFFICIENT, or by RESTART_NECESSARY without further progress, or after
RESTART_ARTIFICIAL of all iterations, and the primal weight omega moves towards
||dual move|| / ||primal move||. One iteration is one forward and one adjoint product; the
forward products of Z are kept, so 2 Z+ - Z costs no product.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from .admm import Check
from .operators import Operators
from .prox import EllipsoidProx

ETA = 0.95
POWER_STEPS = 15
RESTART_EVERY = 64
RESTART_SUFFICIENT = 0.2
RESTART_NECESSARY = 0.8
RESTART_ARTIFICIAL = 0.36
#: the primal weight moves half way (in log scale) towards the measured ratio
WEIGHT_SMOOTHING = 0.5


@dataclass
class PdhgState:
    Z: torch.Tensor
    w: torch.Tensor
    mu1: torch.Tensor
    mu2: Optional[torch.Tensor]
    pred: torch.Tensor          # A Z
    R1: torch.Tensor            # G1 Z
    R2: Optional[torch.Tensor]  # G2 Z
    rho: float                  # the primal weight omega (named rho for the driver's log)
    iterations: int = 0
    restarts: int = 0


def _top_eigenvalue(apply, ops) -> float:
    """The largest eigenvalue of a PSD map on Z by POWER_STEPS power steps (Rayleigh quotient)."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    Z = torch.randn(ops.shape, generator=gen, dtype=torch.float64).to(device=ops.device, dtype=ops.dtype)
    value = 1.0
    for _ in range(POWER_STEPS):
        Z = Z / Z.norm()
        image = apply(Z)
        value = float((image * Z).sum())
        Z = image
    return max(value, torch.finfo(torch.float32).tiny)


class Pdhg:
    """The iteration of the module docstring on :class:`Operators` ``ops``."""

    name = "pdhg"

    def __init__(self, ops: Operators, rho: Optional[float] = None) -> None:
        self.ops = ops
        self.prox = EllipsoidProx(ops.norm_weight)
        self.omega0 = rho
        bound_a, self.Lg = ops.norm_bounds()
        # the Cauchy-Schwarz bound on ||A||^2 counts every overlapping mask and can be loose by
        # a large factor; a few power steps on A^T A (kept below the bound) give the working
        # value, with the safety factor ETA covering the estimate's shortfall
        self.La = min(bound_a, 1.1 * _top_eigenvalue(lambda Z: ops.adjoint(ops.predict(Z)), ops))
        self.products = 2 * POWER_STEPS
        # the block-scaled operator [A / ||A||; G / ||G||] has norm at most sqrt(2)
        self.eta = ETA / math.sqrt(2.0)
        self.state: Optional[PdhgState] = None

    def _steps(self, omega: float):
        return self.eta / omega, self.eta * omega / self.La, self.eta * omega / self.Lg

    def start(self, Z0: torch.Tensor, multipliers=None, rho: Optional[float] = None) -> None:
        ops = self.ops
        Z = Z0.to(ops.dtype).clone()
        pred, R1, R2 = ops.forward(Z)
        self.products += 1
        w = pred - ops.y
        if multipliers is not None:
            mu1 = multipliers[0].clone()
            mu2 = None if multipliers[1] is None else multipliers[1].clone()
        else:
            mu1, mu2 = ops.rows_zeros()
        omega = self.omega0 if rho is None else rho
        if omega is None:  # ||dual|| / ||primal|| at the start, in the block scaling
            omega = max(float(w.norm()), 1e-12) / max(float(Z.norm()), 1e-12) / math.sqrt(self.La)
        self.state = PdhgState(Z, w, mu1, mu2, pred, R1, R2, omega)
        self._restart_point()

    def _restart_point(self) -> None:
        st = self.state
        self._anchor = self._snapshot()
        self._sum = [torch.zeros_like(t) for t in self._anchor if t is not None]
        self._count = 0
        self._anchor_error = None
        self._last_error = None
        self._since = 0

    def _snapshot(self):
        st = self.state
        return [st.Z.clone(), st.w.clone(), st.mu1.clone(), None if st.mu2 is None else st.mu2.clone()]

    def _pdhg(self, Z, w, mu1, mu2, pred, R1, R2):
        """One PDHG step from (Z, w, mu) with A Z, G Z given; returns the new point and its products."""
        ops = self.ops
        tau, sw, sm = self._steps(self.state.rho)
        C = ops.adjoint(w, -mu1, None if mu2 is None else -mu2)
        Zn = self.prox(Z - tau * C, tau * ops.program.beta)
        pn, R1n, R2n = ops.forward(Zn)
        wn = (w + sw * (2 * pn - pred - ops.y)) / (1 + sw)
        mu1n = (mu1 - sm * (2 * R1n - R1)).clamp_min_(0)
        mu2n = None if mu2 is None else (mu2 - sm * (2 * R2n - R2)).clamp_min_(0)
        return Zn, wn, mu1n, mu2n, pn, R1n, R2n

    def _error(self, old, new) -> float:
        """The fixed-point residual ||T(x) - x|| in the step-size metric."""
        tau, sw, sm = self._steps(self.state.rho)
        total = float((new[0] - old[0]).square().sum()) / tau + float((new[1] - old[1]).square().sum()) / sw
        total += float((new[2] - old[2]).square().sum()) / sm
        if old[3] is not None:
            total += float((new[3] - old[3]).square().sum()) / sm
        return math.sqrt(total)

    def step(self, check: bool = False) -> Optional[Check]:
        st, ops = self.state, self.ops
        old = (st.Z, st.w, st.mu1, st.mu2)
        Zn, wn, mu1n, mu2n, pn, R1n, R2n = self._pdhg(st.Z, st.w, st.mu1, st.mu2, st.pred, st.R1, st.R2)
        st.Z, st.w, st.mu1, st.mu2, st.pred, st.R1, st.R2 = Zn, wn, mu1n, mu2n, pn, R1n, R2n
        st.iterations += 1
        self.products += 2
        self._since += 1
        for acc, t in zip(self._sum, (Zn, wn, mu1n, mu2n)):
            acc.add_(t)
        self._count += 1
        if self._since % RESTART_EVERY == 0:
            self._maybe_restart(self._error(old, (Zn, wn, mu1n, mu2n)))
        if not check:
            return None
        st = self.state
        v = ops.y - st.pred
        C = ops.adjoint(v, st.mu1, st.mu2)
        self.products += 1
        worst = float(st.R1.min())
        if st.R2 is not None:
            worst = min(worst, float(st.R2.min()))
        return Check(Z=st.Z, Q=st.Z, pred=st.pred, worst=worst, mu1=st.mu1, mu2=st.mu2, C=C)

    def _maybe_restart(self, err_current: float) -> None:
        st, ops = self.state, self.ops
        avg = [t / self._count for t in self._sum]
        if st.mu2 is None:
            avg.append(None)
        pa, R1a, R2a = ops.forward(avg[0])
        stepped = self._pdhg(avg[0], avg[1], avg[2], avg[3], pa, R1a, R2a)
        self.products += 3
        err_avg = self._error(avg, stepped[:4])
        use_avg = err_avg < err_current
        err = min(err_avg, err_current)
        if self._anchor_error is None:
            self._anchor_error = err
        restart = (err <= RESTART_SUFFICIENT * self._anchor_error
                   or (err <= RESTART_NECESSARY * self._anchor_error and self._last_error is not None
                       and err > self._last_error)
                   or self._since >= RESTART_ARTIFICIAL * st.iterations)
        self._last_error = err
        if not restart:
            return
        if use_avg:
            st.Z, st.w, st.mu1, st.mu2 = avg
            st.pred, st.R1, st.R2 = pa, R1a, R2a
        new = self._snapshot()
        dz = float((new[0] - self._anchor[0]).norm())
        dy2 = float((new[1] - self._anchor[1]).square().sum()) / self.La
        dy2 += float((new[2] - self._anchor[2]).square().sum()) / self.Lg
        if new[3] is not None:
            dy2 += float((new[3] - self._anchor[3]).square().sum()) / self.Lg
        if dz > 1e-12 and dy2 > 1e-24:
            st.rho = math.exp(WEIGHT_SMOOTHING * math.log(math.sqrt(dy2) / dz)
                              + (1 - WEIGHT_SMOOTHING) * math.log(st.rho))
        st.restarts += 1
        anchor_error = err
        self._restart_point()
        self._anchor_error = anchor_error
