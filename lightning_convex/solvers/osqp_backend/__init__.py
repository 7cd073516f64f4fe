"""OSQP adapter: the restricted SOCP through a smoothing outer loop whose steps are OSQP QPs,
an exact face polish, and a duality-gap certificate.

The restricted program (MATH.md section 3), with one group g = (p, j) per neuron of a pattern:

    minimize  F(q) = 1/2 ||A q - y||^2 + beta * sum_g ||q_g||      s.t.  G q >= 0

OSQP solves QPs only; the group norms are what keeps F out of its reach. The method:

1. Smoothing (:mod:`.smoothing`, :mod:`.run`). ||x|| is replaced by phi_e(x) = sqrt(||x||^2 +
   e^2) - e (smooth, convex, within e of ||x||), and F_e is minimised by proximal Newton steps:
   each step is one OSQP QP (the second-order model of F_e, the cone rows kept exactly), written
   with the residual as a variable so that the QP's sparsity never changes; OSQP's workspace is
   updated and warm-started from step to step, and rebuilt only when a step violates a cone row
   outside the working set (cutting planes; most rows never bind). Each step is projected onto
   the cones (:mod:`.projection`, exactly feasible) and line-searched on F_e; e shrinks once a
   step moves no group by more than a fraction of e, and OSQP's tolerance tightens whenever its
   step is no descent direction. The minimisers of F_e converge to the optimum as e -> 0, and
   every iteration lowers F_e, tightens OSQP or lowers e: nothing stalls by design, and no
   guess about active groups or rows is involved.
2. Polish (:mod:`.polish`, :mod:`.face`). From a smoothed point, the support S (groups well
   above e) and the face (the rows the QP's multipliers call active and that are nearly tight)
   are read off; on S the norms are smooth, and an active-set method solves the restricted
   problem to rounding: Newton on the face (null-space bases, so dependent rows are free),
   blocking rows join the face, and when no mu >= 0 makes the face point stationary the NNLS
   residual gives a tangent-cone descent step that releases rows (degenerate-safe).
3. Certificate (:mod:`.multipliers`). mu >= 0 is fitted per pattern by NNLS (stationarity on S,
   Lawson's minimax reweighting for zero groups); with v = y - A q, any c in
   [0, beta / max_g ||A_g^T v + (G^T mu)_g||] makes c v dual feasible (MATH.md section 5), so
   g(c v) <= optimum (:mod:`lightning_convex.duality`).

A polish follows each new e once e is small against the iterate. Stopping rule: ``OPTIMAL`` iff a
polished point has certified relative gap (F(q) - g(c v)) / F(q) <= ``tol`` and cone-row violation
max(0, -min G q) <= ``feas_tol`` * max(1, max|y|). Otherwise the best point comes back with
``TIME_LIMIT`` / ``ITERATION_LIMIT`` (``max_iter`` counts OSQP steps and polishes), the mapped
status of an inner OSQP failure (:data:`STATUS_MAP`), or ``INACCURATE`` when e and OSQP's
tolerance are both at their floors without a certificate. The objective, residual and violation of
the returned Solution are recomputed from Q by the program.

Warm starts (:mod:`.warm`): a :class:`Solution` (patterns matched exactly or to the nearest old
pattern), the ``ParallelReLU`` the patterns came from (q_kj = w3_k w2_kj W1_k[:, j]) or a convex
variable Q. The warm point is projected onto the new cones and polished first (the support and
face of a nearby solution are usually the new ones); if that does not certify, the smoothed
steps start from it at e = 1e-3 of its largest group.

NNLS (:func:`nnls`): scipy's Lawson-Hanson can return a non-optimal point with a wrong residual
norm and no warning (scipy issue #25389), so every NNLS result is checked against its KKT
conditions and redone with ``lsq_linear``'s BVLS when it fails them.

Modules: :mod:`.problem` (matrices, indexing, checked NNLS), :mod:`.warm`, :mod:`.projection`,
:mod:`.smoothing`, :mod:`.polish`, :mod:`.face`, :mod:`.multipliers`, :mod:`.qp` (OSQP statuses
and one inner solve), :mod:`.limits` (time and iteration budget), :mod:`.run` (one run),
:mod:`.backend` (``solve_osqp`` and the registry entry).

References: B. Stellato, G. Banjac, P. Goulart, A. Bemporad, S. Boyd, "OSQP: an operator splitting
solver for quadratic programs", Math. Prog. Comp. 12 (2020); J. D. Lee, Y. Sun, M. A. Saunders,
"Proximal Newton-type methods for minimizing composite functions", SIAM J. Optim. 24 (2014);
Y. Nesterov, "Smooth minimization of non-smooth functions", Math. Prog. 103 (2005) (smoothing);
J. Nocedal, S. Wright, "Numerical Optimization", 2nd ed. (2006), ch. 16 (null-space and active-set
methods, gradient projection); C. Lawson, R. Hanson, "Solving Least Squares Problems" (1974)
(NNLS); C. Lawson, "Contributions to the theory of linear least maximum approximation", PhD
thesis, UCLA (1961) (minimax by reweighting); T. Ergen, M. Pilanci, "Global Optimality Beyond
Two Layers: Training Deep ReLU Networks via Convex Programs", ICML 2021 (the program, its dual).
"""

from .backend import BACKEND, solve_osqp
from .problem import nnls
from .qp import STATUS_MAP

__all__ = ["BACKEND", "STATUS_MAP", "nnls", "solve_osqp"]
