"""ADMM on the restricted program with every step exact, in whitened coordinates.

The program (MATH.md section 3) in z coordinates (:mod:`.operators`, X = U Sigma V^T, F = U) is

    minimize  h(Q) + c(U) + l(V)      subject to   Q = Z,   U = F Z,   V = F Z

over the whitened variable Z (P, m, r) and two copies U, V (n, P, m) of its pre-activations
F z_pj, where h(Q) = beta sum ||a * q_pj|| (a = 1 / sigma: the path norm), c = the indicator of
the row cones (:mod:`.cones`) and l(V) = 1/2 sum_i (sum_pj M_pj,i V_i,pj - y_i)^2 the squared
loss. ADMM with the blocks (Q, U, V) and Z (Boyd et al. 2011, scaled form, over-relaxation
alpha) then needs only exact steps:

* Q: the proximal map of h, an ellipsoidal group soft-threshold (:mod:`.prox`);
* U: the projection of every row onto its cone, whose KKT multipliers times rho_u are cone
  multipliers mu >= 0 (so the MATH.md section-5 bound is valid at every iterate);
* V: the proximal map of the loss, one Sherman-Morrison step per row (the loss of row i only
  sees the masked sum m_i . V_i);
* Z: a least-squares step whose matrix rho_q I + (rho_u + rho_v) F^T F is a multiple of the
  identity because F has orthonormal columns (this is where the eigendecomposition of X^T X
  pays off: the linear step of MATH.md section 9 costs nothing).

One iteration is one product F Z (n x r by r x P m) and one product F^T W per row chunk, plus
elementwise work. The penalties share one scale rho (rho_q = rho_u = rho_v), set by residual
balancing (Boyd et al. section 3.4.1) on relative residuals. Rows are streamed in chunks: the
persistent per-row state is T_u = U^ + L_u and T_v = V^ + L_v (the relaxed copies plus their
scaled duals; L = T - F Z is recovered at the next iteration), so memory is 2 P n m entries plus
one chunk of temporaries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch

from .anderson import Anderson
from .cones import row_multipliers
from .operators import Operators
from .prox import EllipsoidProx

#: over-relaxation (Eckstein & Bertsekas 1992; chosen on benchmarks/engine_methods.py)
ALPHA = 1.8
#: the starting penalty, in units of beta
RHO_START = 0.03
#: residual balancing (on check iterations): when the relative primal and dual residuals
#: differ by more than BALANCE_RATIO, rho moves by sqrt(their ratio) (OSQP's rule), clipped to
#: [1 / BALANCE_FACTOR, BALANCE_FACTOR]. The first change may come after BALANCE_EVERY
#: iterations and every change doubles the wait for the next, so rho settles (ADMM converges
#: for a penalty that changes finitely often; one that keeps moving stalls the tail)
BALANCE_FACTOR = 10.0
BALANCE_RATIO = 2.0
BALANCE_EVERY = 100


@dataclass
class AdmmState:
    """What the iteration carries (and what a warm start restores)."""

    Z: torch.Tensor                 # (P, m, r) the block-2 variable
    Lq: torch.Tensor                # (P, m, r) scaled dual of Q = Z
    Tu: torch.Tensor                # (n, P, m) U^ + L_u
    Tv: torch.Tensor                # (n, P, m) V^ + L_v
    rho: float
    iterations: int = 0
    rho_changes: int = 0
    last_balance: int = 0
    residuals: dict = field(default_factory=dict)


@dataclass
class Check:
    """The quantities of one iterate that the certificate needs (working dtype)."""

    Z: torch.Tensor       # the primal point (P, m, r)
    Q: torch.Tensor       # the prox output (exact zero groups), another primal candidate
    pred: torch.Tensor    # A Z (n,)
    worst: float          # min over cone rows of G Z (negative: violated)
    mu1: torch.Tensor     # (n, P, m) cone multipliers >= 0
    mu2: Optional[torch.Tensor]
    C: torch.Tensor       # F^T (M v + S1 mu1 + S2 D1 mu2) with v = y - A Z (P, m, r)


class Admm:
    """The iteration of the module docstring on :class:`Operators` ``ops`` (needs n >= r, i.e.
    F^T F = I; always true after :func:`~.operators.row_basis` drops null directions)."""

    name = "admm"

    def __init__(self, ops: Operators, rho: Optional[float] = None, alpha: float = ALPHA,
                 anderson: int = 0) -> None:
        self.ops = ops
        self.alpha = float(alpha)
        self.prox = EllipsoidProx(ops.norm_weight)
        # rho scales with beta (the dual variables are subgradients of beta * norm); balancing
        # then moves it, and on the benchmark programs (benchmarks/engine_methods.py) rising to
        # the balanced value from below converged fastest
        self.rho0 = RHO_START * ops.program.beta if rho is None else float(rho)
        self.state: Optional[AdmmState] = None
        self.memory = int(anderson)
        self.anderson: Optional[Anderson] = None
        #: products over all rows (X z or X^T w) so far; a pass is two
        self.products = 0

    # -- start -------------------------------------------------------------------------------
    def start(self, Z0: torch.Tensor, multipliers=None, rho: Optional[float] = None) -> None:
        """Start at Z0 (whitened). With ``multipliers`` (mu1, mu2) (the engine's (n, P, m)
        layout) the scaled duals start at their fixed-point values for Z0: from the V- and
        U-steps at a fixed point, rho L_v = M v (v = y - A Z0, the residual) and
        rho L_u = S1 mu1 + S2 D1 mu2, and from the Z-step L_q = -F^T (L_u + L_v), so a
        solution's own Q and multipliers resume where that solve stopped. Without them every
        dual starts at 0: a network's residual is far from the optimal one, and a dual built
        from it costs a long transient (measured on the benchmark programs)."""
        ops = self.ops
        rho = self.rho0 if rho is None else float(rho)
        Z0 = Z0.to(ops.dtype)
        Zf = Z0.reshape(ops.P * ops.m, ops.r)
        Tu = torch.empty(ops.n, ops.P, ops.m, dtype=ops.dtype, device=ops.device)
        Tv = torch.empty_like(Tu)
        acc = torch.zeros(ops.P * ops.m, ops.r, dtype=ops.dtype, device=ops.device)
        for rows in ops.row_chunks():
            mk = ops.masks(rows)
            FZ = (ops.F[rows] @ Zf.T).view(-1, ops.P, ops.m)
            v = ops.y[rows] - (mk.M * FZ).sum(dim=(1, 2))
            W = mk.M * v[:, None, None] if multipliers is not None else torch.zeros_like(FZ)
            Tv[rows] = FZ + W / rho
            Wu = torch.zeros_like(W)
            if multipliers is not None:
                mu1, mu2 = multipliers
                Wu = mk.S1 * mu1[rows]
                if mk.S2 is not None and mu2 is not None:
                    Wu.addcmul_(mk.D1f, (mk.S2 * mu2[rows])[:, :, None])
            Tu[rows] = FZ + Wu / rho
            acc.addmm_((W + Wu).view(-1, ops.P * ops.m).T, ops.F[rows])
        self.products += 2
        Lq = -acc.view_as(Z0) / rho
        # one flat buffer holds the whole iterate (Z, L_q, T_u, T_v): Anderson acceleration
        # works on it as one vector
        sizes = [Z0.numel(), Lq.numel(), Tu.numel(), Tv.numel()]
        self.flat = torch.cat([Z0.reshape(-1), Lq.reshape(-1), Tu.reshape(-1), Tv.reshape(-1)])
        Zv, Lqv, Tuv, Tvv = torch.split(self.flat, sizes)
        self.state = AdmmState(Z=Zv.view_as(Z0), Lq=Lqv.view_as(Z0), Tu=Tuv.view_as(Tu), Tv=Tvv.view_as(Tv), rho=rho)
        self.anderson = Anderson(self.flat.numel(), self.flat, self.memory) if self.memory else None

    # -- one iteration -------------------------------------------------------------------------
    def step(self, check: bool = False) -> Optional[Check]:
        """One ADMM iteration; with ``check`` also the iterate's certificate ingredients.

        With L = T - F Z and the projection / prox written through their multipliers, the
        relaxed updates collapse to T <- T + alpha (X - F Z) with X - F Z = (F Z - T) + (the
        step's correction), which is what the loop computes.
        """
        ops, st, a = self.ops, self.state, self.alpha
        rho = st.rho
        beta = ops.program.beta
        s_in = self.flat.clone() if self.anderson is not None else None
        Z = st.Z.clone()
        Q = self.prox(Z - st.Lq, beta / rho)
        acc = torch.zeros(ops.P * ops.m, ops.r, dtype=ops.dtype, device=ops.device)
        Zf = Z.reshape(ops.P * ops.m, ops.r)
        r_u = r_v = dual_sq = 0.0
        if check:
            pred = torch.empty(ops.n, dtype=ops.dtype, device=ops.device)
            mu1 = torch.empty(ops.n, ops.P, ops.m, dtype=ops.dtype, device=ops.device)
            mu2 = None if ops.depth == 2 else torch.empty(ops.n, ops.P, dtype=ops.dtype, device=ops.device)
            C = torch.zeros_like(acc)
            worst = math.inf
        for rows in ops.row_chunks():
            mk = ops.masks(rows)
            FZ = (ops.F[rows] @ Zf.T).view(-1, ops.P, ops.m)
            Tu, Tv = st.Tu[rows], st.Tv[rows]
            # U = proj(F Z - L_u) = (2 F Z - T_u) + S1 p1 + S2 D1 p2, so U - F Z = D_u + corr
            Du = FZ - Tu
            Dv = FZ - Tv
            if check:  # -Du and -Dv are the scaled duals L_u, L_v here
                dual_sq += float(Du.square().sum()) + float(Dv.square().sum())
            p1, p2 = row_multipliers(mk.S1 * (FZ + Du), mk.b)
            corr = mk.S1 * p1
            if p2 is not None:
                corr.addcmul_(mk.D1f, (mk.S2 * p2)[:, :, None])
            Du.add_(corr)
            # V = prox_loss(F Z - L_v) = (2 F Z - T_v) - M s / rho, per row (Sherman-Morrison)
            yc = ops.y[rows]
            sres = ((mk.M * (FZ + Dv)).sum(dim=(1, 2)) - yc) / (rho + mk.count)
            Dv.addcmul_(mk.M, sres[:, None, None], value=-1.0)
            # T <- (1 - alpha) T + alpha F Z + alpha corr = T + alpha (X - F Z)
            Tu.add_(Du, alpha=a)
            Tv.add_(Dv, alpha=a)
            acc.addmm_((Tu + Tv).view(-1, ops.P * ops.m).T, ops.F[rows])
            if check:
                r_u += float(Du.square().sum())
                r_v += float(Dv.square().sum())
                p = (mk.M * FZ).sum(dim=(1, 2))
                pred[rows] = p
                torch.mul(p1, rho, out=mu1[rows])
                W = mk.M * (yc - p)[:, None, None] + mk.S1 * mu1[rows]
                worst = min(worst, float((mk.S1 * FZ).min()))
                if p2 is not None:
                    mu2[rows] = rho * p2
                    W.addcmul_(mk.D1f, (mk.S2 * mu2[rows])[:, :, None])
                    worst = min(worst, float((mk.S2 * (mk.D1f * FZ).sum(dim=2)).min()))
                C.addmm_(W.view(-1, ops.P * ops.m).T, ops.F[rows])
        # Z: (rho_q + rho_u + rho_v) Z = rho (Q^ + L_q) + F^T rho (T_u + T_v), all rho equal
        Qh = a * Q + (1 - a) * Z
        Z_new = (Qh + st.Lq + acc.view_as(Z)) / 3.0
        st.Lq.add_(Qh).sub_(Z_new)
        st.Z.copy_(Z_new)
        st.iterations += 1
        self.products += 3 if check else 2
        if self.anderson is not None:
            self.flat.copy_(self.anderson(s_in, self.flat.clone()))
        if not check:
            return None
        r_q = float((Q - Z).square().sum())
        dz = float((Z_new - Z).square().sum())
        # relative residuals as OSQP scales them: the primal one by the size of x = (Q, U, V) and
        # M z = (Z, F Z, F Z) (F has orthonormal columns: ||F Z|| = ||Z||), the dual one by the
        # size of the dual variables rho (L_q, L_u, L_v) (their image M^T L vanishes here)
        st.residuals = {"primal": math.sqrt(r_q + r_u + r_v), "dual": rho * math.sqrt(3.0 * dz),
                        "scale_x": math.sqrt(3.0) * float(Z.norm()),
                        "scale_y": rho * math.sqrt(float(st.Lq.square().sum()) + dual_sq)}
        self._balance()
        return Check(Z=Z, Q=Q, pred=pred, worst=worst, mu1=mu1, mu2=mu2, C=C.view_as(Z))

    def _balance(self) -> None:
        """Residual balancing on relative residuals; the scaled duals follow rho."""
        st = self.state
        if st.iterations - st.last_balance < BALANCE_EVERY * 2 ** st.rho_changes:
            return
        res = st.residuals
        tiny = 1e-30
        rel_p = res["primal"] / max(res["scale_x"], tiny)
        rel_d = res["dual"] / max(res["scale_y"], tiny)
        if rel_d <= tiny or rel_p <= tiny or max(rel_p / rel_d, rel_d / rel_p) <= BALANCE_RATIO:
            return
        f = min(max(math.sqrt(rel_p / rel_d), 1.0 / BALANCE_FACTOR), BALANCE_FACTOR)
        self.rescale(f)
        st.last_balance = st.iterations

    def rescale(self, f: float) -> None:
        """rho <- f rho with the scaled duals L <- L / f (T = X^ + L is rebuilt from F Z)."""
        st, ops = self.state, self.ops
        Zf = st.Z.reshape(ops.P * ops.m, ops.r)
        for rows in ops.row_chunks():
            FZ = (ops.F[rows] @ Zf.T).view(-1, ops.P, ops.m)
            # T - F Z is exactly the current scaled dual L (module docstring)
            st.Tu[rows] = FZ + (st.Tu[rows] - FZ) / f
            st.Tv[rows] = FZ + (st.Tv[rows] - FZ) / f
        st.Lq.div_(f)
        st.rho *= f
        if self.anderson is not None:  # the scaled duals changed units: the history is stale
            self.anderson.reset()
        self.products += 1
        st.rho_changes += 1
