"""OSQP adapter: the restricted SOCP through OSQP quadratic programs, an exact face polish and a
duality-gap certificate.

The restricted program (MATH.md section 3), with one group g = (p, j) per neuron of a pattern:

    minimize  F(q) = 1/2 ||A q - y||^2 + beta * sum_g ||q_g||      s.t.  G q >= 0

OSQP solves QPs only. What makes the SOCP hard for it, as seen on the programs of
``benchmarks/solvers.py``: most groups are zero at the optimum (all P*n*(m+1) rows of a zero
group are tight), the nonzero groups sit on low-dimensional faces of their cones (a nonzero
group typically has d'-1 tight rows: it lies on an extreme ray), and many tight rows are
linearly dependent. Every QP built from the program is therefore degenerate: OSQP's ADMM needs
many iterations and its own polish fails. So OSQP is used where a first-order QP solver is good
(a moderately accurate point, the joint moves of many groups at once), and exactness comes from
a small smooth problem on the identified face.

1. Reweighted QPs with OSQP (:mod:`.stage_a`; cold starts). ||q_g|| <= ||q_g||^2/(2 eta_g) +
   eta_g/2 with equality at eta_g = ||q_g||, so each round minimises 1/2||A q - y||^2 +
   beta/2 sum_g ||q_g||^2/eta_g over the rows of a working set and resets eta_g. Only the
   diagonal of P changes between rounds: one OSQP workspace is reused through
   ``update(Px=..., Px_idx=...)`` with warm starts; rows the solution violates join the working
   set (the most violated d' per group or pattern). From a zero start the working set starts
   empty: at q = 0 every row is tight, but few rows bind at the optimum, and taking them all
   would make each QP as large as the whole program. A few rounds give a point to about OSQP's
   accuracy whose zero groups are small (dropped below 1e-3 of the largest group).
2. Feasible start (:mod:`.projection`). The OSQP point meets the rows to ADMM accuracy only; its
   Euclidean projection on each pattern's cone (the dual of the projection is a nonnegative
   least-squares problem, scipy's NNLS) is exactly feasible, and the rows NNLS leaves active
   (linearly independent by construction) start the working face E.
3. Newton on the face (:mod:`.face`). On {G_E q = 0, q_g = 0 off the support S}, q = T z with T
   an orthonormal null-space basis per pattern (SVD, which also discards dependent rows), F is
   smooth; Newton steps on z (Cholesky) with a ratio test on the rows outside E (blocking rows
   join E; a group whose face shrinks to {0} leaves S) and Armijo backtracking.
4. Multipliers and certificate (:mod:`.multipliers`). mu >= 0 is fitted per pattern by NNLS on
   the tight rows: stationarity (G^T mu)_g = beta q_g/||q_g|| - A_g^T v on S (weight 1e5), and for
   zero groups the smallest ||A_g^T v + (G^T mu)_g||, with Lawson's reweighting pushing the fit
   towards the minimax that the certificate needs (a zero pattern that duplicates a nonzero one
   takes its twin's multipliers). With v = y - A q, any c in [0, beta / max_g ||A_g^T v +
   (G^T mu)_g||] makes c v dual feasible (MATH.md section 5): g(c v) = c v.y - c^2/2 ||v||^2 <=
   optimum (:mod:`lightning_convex.duality`).
5. Active-set moves when the gap is open (:mod:`.moves`): release the tight rows whose
   least-squares multipliers are negative; let zero groups enter along the projection of A_g^T v
   on the cone of their tight rows when its norm exceeds beta (a one-dimensional step each, then
   a line search); when no group can move alone (the second-layer rows couple the neurons of a
   pattern), one OSQP QP over S and the flagged groups with the Newton model of the norm,
   beta (t_g + ||(I - u_g u_g^T) q_g||^2/(2 eta_g)), t_g >= max(0, u_g^T q_g) (exact kink at 0),
   makes the joint move; its point is projected (step 2) and kept only if F decreased.

Stopping rule (:mod:`.run`): ``OPTIMAL`` iff the certified relative gap (F(q) - g(c v)) / F(q)
<= ``tol`` and the largest cone-row violation max(0, -min G q) <= ``feas_tol`` * max(1, max|y|)
(iterates of steps 2-5 satisfy the rows to rounding). Otherwise the best feasible point comes
back with ``TIME_LIMIT`` / ``ITERATION_LIMIT`` (``max_iter`` counts outer iterations: the
stage-A run and each face solve of the active-set cycles; the Newton steps of one face, one per
row met on the way, are capped at 60 instead), the mapped status of an inner OSQP failure
(:data:`STATUS_MAP`) when one stopped progress, or ``INACCURATE`` when the active-set updates
stall with the gap open. The objective, residual and violation of the returned Solution are
recomputed from Q by the program.

Warm starts (:mod:`.warm`, policy in :mod:`.backend`): a :class:`Solution`, the ``ParallelReLU``
the patterns came from (q_kj = w3_k w2_kj W1_k[:, j]) or a convex variable Q. Each pattern's q
is projected onto its new cone (step 2). When the projected point's F is within ``WARM_GATE`` x
the old objective, the active-set cycles (steps 3-5) start from it directly, for at most
``DIRECT_WARM_ITERS`` face solves and the old solve's own time; if that does not certify, a
cold solve follows, so a warm call costs at most about one cold solve more than a cold one. A
network or Q (feasible, far from optimal) runs step 1 from that point instead (up to
``warm_irls_rounds`` rounds, stopping when a round gains < 1e-4 relative).

NNLS (:func:`nnls`): scipy's Lawson-Hanson can return a non-optimal point with a wrong residual
norm and no warning (scipy issue #25389), so every NNLS result is checked against its KKT
conditions and redone with ``lsq_linear``'s BVLS when it fails them.

Modules: :mod:`.problem` (matrices, indexing, checked NNLS), :mod:`.warm`, :mod:`.projection`,
:mod:`.stage_a`, :mod:`.face`, :mod:`.multipliers`, :mod:`.moves`, :mod:`.qp` (OSQP statuses and
one inner solve), :mod:`.limits` (time and iteration budget), :mod:`.run` (one run),
:mod:`.backend` (``solve_osqp`` and the registry entry).

References: B. Stellato, G. Banjac, P. Goulart, A. Bemporad, S. Boyd, "OSQP: an operator splitting
solver for quadratic programs", Math. Prog. Comp. 12 (2020); I. Daubechies, R. DeVore, M. Fornasier,
C. S. Gunturk, "Iteratively reweighted least squares minimization for sparse recovery", CPAM 63
(2010); J. Nocedal, S. Wright, "Numerical Optimization", 2nd ed. (2006), ch. 16 (null-space and
active-set methods) and ch. 18 (SQP); C. Lawson, R. Hanson, "Solving Least Squares Problems"
(1974) (NNLS); C. Lawson, "Contributions to the theory of linear least maximum approximation",
PhD thesis, UCLA (1961) (minimax by reweighting); T. Ergen, M. Pilanci, "Global Optimality Beyond
Two Layers: Training Deep ReLU Networks via Convex Programs", ICML 2021 (the program, its dual).
"""

from .backend import BACKEND, solve_osqp
from .problem import nnls
from .qp import STATUS_MAP

__all__ = ["BACKEND", "STATUS_MAP", "nnls", "solve_osqp"]
