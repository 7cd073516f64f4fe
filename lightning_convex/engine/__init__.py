"""A budgeted engine for the restricted convex program at scale (issue 13).

:func:`solve` runs an ADMM with exact steps in whitened coordinates on the program's device,
keeps cone multipliers mu >= 0 at every iterate, and stops on its own MATH.md section-5
certificate, recomputed in float64 on the program before it is reported.

Modules: :mod:`.driver` (``solve``: warm starts, deadline, checks, final certificate),
:mod:`.operators` (whitened coordinates, fused forward / adjoint over row chunks), :mod:`.prox`
(the regulariser's proximal map there), :mod:`.cones` (row-cone projections with their
multipliers), :mod:`.admm` (the default method), :mod:`.pdhg` (the restarted primal-dual
method it was measured against), :mod:`.anderson` (optional acceleration), :mod:`.certify`
(bounds, repair, multiplier refinement), :mod:`.threads` (the CPU thread count by timing).
"""

from .driver import solve

__all__ = ["solve"]
