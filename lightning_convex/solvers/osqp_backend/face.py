"""Newton's method on an identified face (the polish's inner solver).

On {G_E q = 0, q_g = 0 off the support S}, q = T z with T an orthonormal null-space basis per
pattern (SVD, which also discards dependent rows), F is smooth; Newton steps on z (Cholesky)
with a ratio test on the rows outside E (blocking rows join E; a group that vanishes leaves S)
and Armijo backtracking. :meth:`FaceNewton.enter` puts a point on the face without leaving the
cones.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from .limits import Limits
from .problem import Problem
from .projection import nearest_in_cone


#: a group whose norm is at most this times the largest has vanished (rounding)
VANISH = 1e-12
#: entering a face moves a pattern by at most this fraction of its norm (else E loses a slack row)
MOVE = 1e-2
#: rows of E with a relative slack above this are slack at the point, not tight by rounding
ROUNDING_SLACK = 1e-13


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
            rows = pb.pattern_rows(p, groups)
            blocks.append((groups, pb.cols(groups), self._null_basis(p, groups, rows[E[rows]])))
        return blocks

    def _null_basis(self, p, groups, rows):
        key = (p, groups.tobytes(), rows.tobytes())
        T = self._cache.get(key)
        if T is not None:
            return T
        cols = self.pb.cols(groups)
        if rows.size == 0:
            T = np.eye(cols.size)
        else:
            Cm = self.pb.block(p, groups, rows)
            Cm /= np.maximum(np.linalg.norm(Cm, axis=1, keepdims=True), 1e-300)
            if Cm.shape[0] > Cm.shape[1]:
                # only V is needed: a tall C = Q R has C's singular values and right vectors
                # in its square R, whose SVD skips forming the tall U
                Cm = np.linalg.qr(Cm, mode="r")
            _, sv, Vt = np.linalg.svd(Cm, full_matrices=Cm.shape[0] < Cm.shape[1])
            r = int((sv > 1e-10 * max(sv[0], 1e-300)).sum()) if sv.size else 0
            T = Vt[r:].T
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[key] = T
        return T

    def enter(self, q, S, E, patterns=None):
        """The point of the face {G_E q = 0, G q >= 0} nearest to q, pattern by pattern: in face
        coordinates z (q_p = T z, T orthonormal) the projection of T' q_p onto {G_R T z >= 0}, R
        the pattern's other rows (:func:`.projection.nearest_in_cone`); the rows it lands on join
        E. Unlike projecting onto {G_E q = 0} and adding the rows that then turn negative (which
        cascades to {0}), this moves q by the least amount that the face requires.

        A row of E that is slack at q and not tight at the optimum can leave no room for the
        pattern near q (with nearly dependent rows, a slack of 1e-8 can cut an extreme ray to
        {0}): while the projection would move the pattern by more than MOVE of its norm, the
        E-row with the largest slack at q leaves E. Groups that end at rounding level leave S (their rows leave E).
        Only ``patterns`` (default: every pattern with S-groups) are moved. Returns (q, S, E)."""
        pb = self.pb
        q, E = q.copy(), E.copy()
        gq = pb.G @ q
        slack = gq / np.maximum(pb.group_slack_scale(q), 1e-300)
        for _ in range(3):
            live = np.unique(np.flatnonzero(S) // pb.m)
            for p in live if patterns is None else np.intersect1d(live, patterns):
                groups = pb.pattern_groups(p)
                groups = groups[S[groups]]
                cols = pb.cols(groups)
                rows = pb.pattern_rows(p, groups)
                before = max(float(np.linalg.norm(q[cols])), 1e-300)
                base = E[rows]
                loose = np.flatnonzero(base & (slack[rows] > ROUNDING_SLACK))
                loose = loose[np.argsort(-slack[rows[loose]])]

                def attempt(drop):
                    keep = base.copy()
                    keep[loose[:drop]] = False
                    T = self._null_basis(p, groups, rows[keep])
                    z, on, rest = T.T @ q[cols], None, rows[~keep]
                    if rest.size and T.shape[1]:
                        M = pb.block(p, groups, rest) @ T
                        # scaled by the rows themselves: a row the face makes ~0 is no constraint
                        scale = pb.row_norm[rest] * max(float(np.linalg.norm(z)), 1e-300)
                        z, on = nearest_in_cone(M, z, scale)
                    return keep, T, z, on, rest, float(np.linalg.norm(T @ z - q[cols])) <= MOVE * before

                result = attempt(0)
                if not result[-1] and loose.size:
                    # the fewest largest-slack rows to drop (dropping more only widens the face)
                    lo, hi = 0, loose.size
                    best = attempt(hi)
                    while hi - lo > 1:
                        mid = (lo + hi) // 2
                        trial = attempt(mid)
                        if trial[-1]:
                            hi, best = mid, trial
                        else:
                            lo = mid
                    result = best
                keep, T, z, on, rest, _ = result
                E[rows] = keep
                if on is not None:
                    E[rest[on]] = True
                q[cols] = T @ z
            q.reshape(pb.ng, pb.d)[~S] = 0.0
            nr = pb.norms(q)
            gone = S & (nr <= VANISH * max(float(nr.max()), 1e-300))
            if not gone.any():
                break
            q.reshape(pb.ng, pb.d)[gone] = 0.0
            S = S & ~gone
            E = E & pb.reading_rows(S)
        return q, S, E

    def solve(self, q, S, E, limits: Limits, max_steps=60):
        """Newton on the face until the decrement is negligible. Returns (q, S, E)."""
        pb, beta, d = self.pb, self.pb.beta, self.pb.d
        q, S, E = self.enter(q, S, E)
        blocks = self.basis(S, E)
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
            # a group whose full step passes through 0 (radial component beyond its norm) is
            # headed for the kink, which Newton on the smooth part only approaches: try the point
            # with those groups at 0 (back on the cones, see enter) before the Newton step
            radial = np.einsum("gd,gd->g", U, dq[cols].reshape(-1, d))
            through = np.concatenate([g for g, _, _ in blocks])[radial < -nrS]
            if through.size:
                Sz = S.copy()
                Sz[through] = False
                qz = q + dq
                qz.reshape(pb.ng, d)[through] = 0.0
                qz, Sz, Ez = self.enter(qz, Sz, E & pb.reading_rows(Sz),
                                        patterns=np.unique(through // pb.m))
                fz = pb.F(qz)
                if fz < f and float(-(pb.G @ qz).min(initial=0.0)) <= 0.0:
                    self.newton_steps += 1
                    q, S, E, f = qz, Sz, Ez, fz
                    blocks = self.basis(S, E)
                    continue
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
            changed = None
            if blocked:
                E = E.copy()
                # with the blocking row, every row at rounding level that the step would cross
                # (degenerate faces have many; one at a time would cost a Newton step each)
                tiny = gq[cand] <= ROUNDING_SLACK * pb.group_slack_scale(q)[cand]
                hit = cand[(ratios <= alpha_max * (1 + 1e-9) + 1e-300) | tiny]
                E[hit] = True
                changed = np.unique(pb.row_pattern[hit])
            # the step stayed on the face: only the patterns that gained rows move onto theirs
            q, S, E = self.enter(q, S, E, patterns=changed if changed is not None else np.zeros(0, int))
            blocks = self.basis(S, E)
            f = pb.F(q)
        return q, S, E
