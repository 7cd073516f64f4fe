"""Adapter: the scale engine (:mod:`lightning_convex.engine`) as ``solver="engine"``.

Matrix-free ADMM in whitened coordinates on the program's own device, passes in float32 by
default and every certificate in float64; it stops on its certified relative gap (MATH.md
section 5) and returns cone multipliers with the solution.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..engine import solve as engine_solve
from ..program import RestrictedProgram
from ..solution import Solution
from .registry import Backend, Capabilities


def solve_engine(program: RestrictedProgram, tol: float = 1e-2, time_limit: float = 60.0, warm_start=None,
                 multipliers=None, dtype: Optional[torch.dtype] = None, max_iter: Optional[int] = None,
                 callback=None, method: str = "admm", verbose: bool = False) -> Solution:
    """See :func:`lightning_convex.engine.solve`; passes in float32 unless ``dtype`` says otherwise."""
    return engine_solve(program, time_limit=time_limit, tol=tol, warm_start=warm_start, multipliers=multipliers,
                        dtype=dtype or torch.float32, callback=callback, method=method, max_iter=max_iter,
                        verbose=verbose)


BACKEND = Backend.from_function(
    "engine", solve_engine,
    Capabilities(warm_start=True, multipliers=True, devices=("cpu", "cuda"), max_cone_entries=None, exact=False),
    "whitened ADMM with exact steps on the program's device; stops on its certified gap",
)
