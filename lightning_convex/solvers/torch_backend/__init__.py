"""The restricted program solved on its own device (CPU or CUDA) with torch: ``solver="torch"``.

The program (MATH.md section 3) in conic form, with q = vec(Q) (N = P m d' entries) and one
epigraph variable t_pj per group:

    minimize  1/2 ||y - A q||^2 + beta * sum_{p,j} t_pj
    s.t.      G q >= 0                      (the pattern cone rows, multipliers mu >= 0)
              ||q_pj||_2 <= t_pj            (one second-order cone per group)

Two methods; ``method="auto"`` picks by size (:func:`choose_method`):

* ``"alm"`` (:mod:`.alm`): matrix-free, first order, for large programs (the Fashion-MNIST
  scale): an augmented Lagrangian on the cone rows with FISTA inner solves, chunked over
  patterns on the device.
* ``"ipm"`` (:mod:`.ipm`): for small programs (dense Newton systems fit on the device): a
  primal-dual interior point with Nesterov-Todd scaling and Mehrotra's predictor-corrector
  (second-order cone algebra in :mod:`.soc`; Newton systems dense, or through the low rank of
  A^T A when n is far below the number of unknowns, :mod:`.newton`). In float64 it certifies a
  relative gap of about 1e-6 on degenerate programs and no better, so by default
  (``crossover=True``) it crosses over once its gap is below 1e-5: the support and face its
  iterate names are solved exactly by the OSQP backend's face polish and certified
  (:mod:`.crossover`); an attempt that does not certify lets the interior point go on.

Stopping rule (both methods, :mod:`.certificate`; a certificate, not a heuristic). With
v = y - A q and the current multipliers mu >= 0, bound_pj = ||(A^T v + G^T mu)_pj|| and MATH.md
section 5 gives the valid lower bound LB = g(c v) = c v.y - c^2/2 ||v||^2,
c = clip(v.y / ||v||^2, 0, beta / max bound). The solve is ``OPTIMAL`` when

    J(Q) - LB <= tol * J(Q)     and     max(0, -min G Q) <= tol * max(||y||_inf, ||A Q||_inf),

so an optimal status certifies the objective to ``tol`` relative (up to that feasibility slack).
The multipliers returned (mu1 (P, n, m), mu2 (P, n) or None, >= 0) are the ones in that bound.
Other outcomes (:class:`.method.Outcome`, mapped by :data:`STATUS_MAP`): ``max_iter`` ->
ITERATION_LIMIT, ``time_limit`` -> TIME_LIMIT, a non-finite iterate -> NUMERICAL_ERROR (last
finite iterate returned), an interior-point stall -> INACCURATE, an exception (e.g. out of
device memory) -> FAILED with Q = 0. Reported objectives are recomputed in float64 by the program
itself (:meth:`Solution.from_variable`).

Modules: :mod:`.backend` (``solve_torch``, :func:`choose_method`, the registry entry),
:mod:`.method` (options, outcomes, status map), :mod:`.warm` (:func:`warm_start_variable`),
:mod:`.certificate`, :mod:`.alm`, :mod:`.ipm`, :mod:`.soc`, :mod:`.newton`, :mod:`.crossover`.
"""

from .backend import BACKEND, choose_method, solve_torch
from .method import STATUS_MAP, Outcome
from .warm import warm_start_variable

__all__ = ["BACKEND", "Outcome", "STATUS_MAP", "choose_method", "solve_torch", "warm_start_variable"]
