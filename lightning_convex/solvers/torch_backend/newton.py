"""The interior point's Newton system through the low rank of A^T A (Woodbury), for n << N.

The system is M = A^T A + B with B = G^T (Z/S) G + sum_pj W_pj^-2 (+ a static regularisation).
B is block diagonal over patterns (each cone row and each second-order cone touches one
pattern: block p holds q_p (m d') and t_p (m)), and A^T A has rank <= n. When n is far below
N + P m (sampled-gate programs: hundreds of patterns on a few dozen rows), forming and
Cholesky-factoring M densely costs (N + P m)^3 / 3, while

    M^-1 r = B^-1 r - B^-1 A^T (I_n + A B^-1 A^T)^-1 A B^-1 r

costs P (m (d'+1))^3 / 3 for the blocks and n^2 N for the n x n capacitance matrix. The
Woodbury form cancels digits when B is nearly singular where A^T A is not; two steps of
iterative refinement against M itself (applied as A^T (A x) + B x, never formed) recover them,
and the crossover (:mod:`.crossover`) does not need the interior point below a gap of ~1e-5.
"""

from __future__ import annotations

import torch

from ...program import RestrictedProgram

#: the low-rank form is used when the dense system has more unknowns than this and n is below
#: a quarter of them
DENSE_MAX = 1000


def use_low_rank(n: int, size: int) -> bool:
    """Whether the Newton system of ``size`` unknowns over n rows is solved in low-rank form."""
    return size > DENSE_MAX and 4 * n < size


class LowRankNewton:
    """Factor and solve M = A^T A + B (module docstring) for one interior-point iterate."""

    def __init__(self, wp: RestrictedProgram, A: torch.Tensor):
        P, m, d = wp.shape
        self.wp, self.A = wp, A  # A: (n, N) dense
        self.P, self.m, self.d = P, m, d
        N, Gn = wp.num_variables, P * m
        dev = A.device
        md = m * d
        # each pattern's unknowns: q_p (m d' entries), then t_p (m)
        self.loc = torch.cat([torch.arange(N, device=dev).view(P, md),
                              N + torch.arange(Gn, device=dev).view(P, m)], dim=1)
        j = torch.arange(m, device=dev)
        # (t_pj, q_pj) of group j within its pattern's block
        self.soc_loc = torch.cat([md + j[:, None], j[:, None] * d + torch.arange(d, device=dev)[None, :]], dim=1)
        self.size = N + Gn
        n = A.shape[0]
        self.U = torch.cat([A.T.reshape(P, md, n), torch.zeros(P, m, n, dtype=A.dtype, device=dev)], dim=1)

    def factor(self, cone_gram: torch.Tensor, Winv2: torch.Tensor, reg_rel: float = 1e-12):
        """The solve function of M for the cone part (P, m d', m d') and the second-order cone
        scalings W_pj^-2 (P m, d'+1, d'+1)."""
        P, m, d = self.P, self.m, self.d
        k, md = d + 1, m * d
        mk = md + m
        B = torch.zeros(P, mk, mk, dtype=cone_gram.dtype, device=cone_gram.device)
        B[:, :md, :md] = cone_gram
        I = self.soc_loc[:, :, None].expand(m, k, k)
        J = self.soc_loc[:, None, :].expand(m, k, k)
        B[:, I, J] += Winv2.reshape(P, m, k, k)
        col_sq = self.A.square().sum(dim=0)
        reg = reg_rel * max(float(B.diagonal(dim1=1, dim2=2).abs().max()), float(col_sq.max()) if col_sq.numel() else 0.0)
        eye = torch.eye(mk, dtype=B.dtype, device=B.device)
        for _ in range(6):
            Lb, info = torch.linalg.cholesky_ex(B + reg * eye)
            if int(info.max()) == 0:
                break
            reg *= 100
        else:
            raise FloatingPointError("the interior-point Newton system is not positive definite")
        U = self.U
        W = torch.cholesky_solve(U, Lb)  # B^-1 U, (P, mk, n)
        n = U.shape[2]
        S = torch.eye(n, dtype=B.dtype, device=B.device) + torch.einsum("pin,pim->nm", U, W)
        Ls, info = torch.linalg.cholesky_ex(S)
        if int(info) != 0:
            raise FloatingPointError("the interior-point capacitance matrix is not positive definite")
        loc, size, A, N = self.loc, self.size, self.A, self.wp.num_variables

        def reg_solve(rhs):
            r = rhs[loc][..., None]  # (P, mk, 1)
            u = torch.cholesky_solve(r, Lb)[..., 0]
            t = torch.einsum("pin,pi->n", U, u)
            w = torch.cholesky_solve(t[:, None], Ls)[:, 0]
            u = u - torch.einsum("pin,n->pi", W, w)
            out = torch.empty(size, dtype=rhs.dtype, device=rhs.device)
            out[loc.reshape(-1)] = u.reshape(-1)
            return out

        def apply(x):
            out = torch.empty(size, dtype=x.dtype, device=x.device)
            out[loc.reshape(-1)] = torch.bmm(B, x[loc][..., None])[..., 0].reshape(-1)
            out[:N] += A.T @ (A @ x[:N])
            return out

        def solve(rhs):
            x = reg_solve(rhs)
            for _ in range(2):  # iterative refinement against the unregularised system
                x += reg_solve(rhs - apply(x))
            return x
        return solve
