"""A budgeted engine for the restricted convex program at scale (issue 13).

:func:`solve` runs an ADMM with exact steps in whitened coordinates (:mod:`.admm`,
:mod:`.operators`) on the program's device, keeps cone multipliers mu >= 0 at every iterate,
and stops on its own MATH.md section-5 certificate (:mod:`.certify`).
"""

from .driver import solve

__all__ = ["solve"]
