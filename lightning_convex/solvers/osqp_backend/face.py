"""Stage B: Newton's method on the identified face (step 3).

On {G_E q = 0, q_g = 0 off the support S}, q = T z with T an orthonormal null-space basis per
pattern (SVD, which also discards dependent rows), F is smooth; Newton steps on z (Cholesky)
with a ratio test on the rows outside E (blocking rows join E; a group whose face shrinks to {0}
leaves S) and Armijo backtracking.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from .limits import Limits
from .problem import Problem


class FaceNewton:
    """Newton's method on the face {G_E q = 0, q_g = 0 off S}, with a cache of face bases."""

    def __init__(self, pb: Problem):
        self.pb = pb
        self.newton_steps = 0
        self._cache: dict = {}

    def basis(self, S, E):
        """Per pattern with S-groups: (groups, columns, orthonormal basis of {G_{E,p} q_p = 0})."""
        pb = self.pb
        blocks = []
        for p in np.unique(np.flatnonzero(S) // pb.m):
            groups = pb.pattern_groups(p)
            groups = groups[S[groups]]
            cols = pb.cols(groups)
            rows = pb.pattern_rows(p, groups)
            rows = rows[E[rows]]
            key = (p, groups.tobytes(), rows.tobytes())
            T = self._cache.get(key)
            if T is not None:
                blocks.append((groups, cols, T))
                continue
            if rows.size == 0:
                T = np.eye(cols.size)
            else:
                Cm = pb.G[rows][:, cols].toarray()
                Cm /= np.maximum(np.linalg.norm(Cm, axis=1, keepdims=True), 1e-300)
                # only V is needed: the full U of a tall matrix would cost rows^2
                _, sv, Vt = np.linalg.svd(Cm, full_matrices=Cm.shape[0] < Cm.shape[1])
                r = int((sv > 1e-10 * max(sv[0], 1e-300)).sum()) if sv.size else 0
                T = Vt[r:].T
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[key] = T
            blocks.append((groups, cols, T))
        return blocks

    def onto_face(self, q, S, E):
        """Project q onto the face, adding rows that the projection makes negative to E, and
        dropping from S the groups whose face is {0}. Returns (q, S, E, blocks)."""
        pb = self.pb
        for _ in range(20):
            blocks = self.basis(S, E)
            q = q.copy()
            keep = np.zeros(pb.N, dtype=bool)
            for groups, cols, T in blocks:
                q[cols] = T @ (T.T @ q[cols])
                keep[cols] = True
            q[~keep] = 0.0
            nr = pb.norms(q)
            gone = S & (nr <= 1e-12 * max(float(nr.max()), 1e-300))
            if gone.any():
                q.reshape(pb.ng, pb.d)[gone] = 0.0
                S = S & ~gone
                E = E & pb.reading_rows(S)
                continue
            gq = pb.G @ q
            neg = pb.reading_rows(S) & ~E & (gq < -1e-13 * np.maximum(pb.group_slack_scale(q), 1e-300))
            if not neg.any():
                return q, S, E, blocks
            E = E | neg
        return q, S, E, blocks

    def solve(self, q, S, E, limits: Limits, max_steps=60):
        """Newton on the face until the decrement is negligible. Returns (q, S, E)."""
        pb, beta, d = self.pb, self.pb.beta, self.pb.d
        q, S, E, blocks = self.onto_face(q, S, E)
        f = pb.F(q)
        for _ in range(max_steps):
            limits.check_time()
            if not blocks:
                return q, S, E
            cols = np.concatenate([c for _, c, _ in blocks])
            T = sla.block_diag(*[t for _, _, t in blocks])
            if T.shape[1] == 0:
                return q, S, E
            qS = q[cols]
            AT = pb.times_basis(blocks)
            r = pb.A @ q - pb.y
            Qs = qS.reshape(-1, d)
            nrS = np.linalg.norm(Qs, axis=1)
            U = Qs / nrS[:, None]
            gz = AT.T @ r + T.T @ (beta * U.ravel())
            Hz = AT.T @ AT
            # the norm's Hessian beta (I - u u^T)/||q_g|| is block diagonal: add it pattern by
            # pattern (T is block diagonal by pattern as well)
            row0 = col0 = 0
            for groups_p, cols_p, T_p in blocks:
                kz = T_p.shape[1]
                kg = groups_p.size
                Up = U[row0 // d : row0 // d + kg]
                Tg = T_p.reshape(kg, d, kz)
                proj = np.einsum("gd,gdz->gz", Up, Tg)
                w = beta / nrS[row0 // d : row0 // d + kg]
                Hz[col0 : col0 + kz, col0 : col0 + kz] += (
                    np.einsum("g,gdz,gdw->zw", w, Tg, Tg) - np.einsum("g,gz,gw->zw", w, proj, proj))
                row0 += kg * d
                col0 += kz
            reg = 1e-13 * max(float(np.trace(Hz)) / Hz.shape[0], 1e-300)
            try:
                cf = sla.cho_factor(Hz + reg * np.eye(Hz.shape[0]))
                dz = -sla.cho_solve(cf, gz)
            except (np.linalg.LinAlgError, sla.LinAlgError):
                dz = -np.linalg.lstsq(Hz, gz, rcond=None)[0]
            dec = -float(gz @ dz)
            if not np.isfinite(dec) or dec <= 1e-17 * max(abs(f), 1e-300):
                return q, S, E
            dq = np.zeros(pb.N)
            dq[cols] = T @ dz
            # ratio test on the rows outside E
            gq = pb.G @ q
            gd = pb.G @ dq
            cand = np.flatnonzero(pb.reading_rows(S) & ~E & (gd < 0))
            alpha_max, ratios = np.inf, None
            if cand.size:
                ratios = np.maximum(gq[cand], 0.0) / -gd[cand]
                alpha_max = float(ratios.min())
            step = min(1.0, alpha_max)
            fn = f
            while step > 1e-14:
                fn = pb.F(q + step * dq)
                if fn <= f - 1e-4 * step * dec:
                    break
                step *= 0.5
            blocked = alpha_max <= 1.0 and step >= alpha_max * (1 - 1e-12)
            if step > 1e-14 and fn <= f:
                self.newton_steps += 1
                q = q + step * dq
                f = fn
            elif not blocked:
                return q, S, E  # no descent along the Newton direction: the face is solved
            if blocked:
                E = E.copy()
                E[cand[ratios <= alpha_max * (1 + 1e-9) + 1e-300]] = True
            q, S, E, blocks = self.onto_face(q, S, E)
            f = pb.F(q)
        return q, S, E
