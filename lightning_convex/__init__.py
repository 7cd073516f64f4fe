"""lightning-convex: convex certificates and hybrid convex/SGD training for parallel ReLU networks.

The mathematics is Ergen & Pilanci, "Global Optimality Beyond Two Layers: Training Deep ReLU
Networks via Convex Programs" (ICML 2021); the symbols follow the project's MATH.md.
"""

from . import data
from .active_set import ActiveSetResult, active_set_solve
from .certificates import Certificate, certify
from .model import ParallelReLU
from .objective import objective, predict
from .patterns import PatternSet, concatenate, enumerate_patterns, patterns_of, sample_patterns, union
from .rows import Rows
from .program import RestrictedProgram
from .regressor import ParallelReLURegressor
from .reconstruct import branch_weights, load_solution_, to_network
from .solution import Solution, SolveStatus
from .solvers import available_solvers, solve

__version__ = "0.1.0"

__all__ = [
    "ActiveSetResult",
    "Certificate",
    "ParallelReLU",
    "ParallelReLURegressor",
    "PatternSet",
    "RestrictedProgram",
    "Rows",
    "Solution",
    "SolveStatus",
    "active_set_solve",
    "available_solvers",
    "branch_weights",
    "certify",
    "concatenate",
    "enumerate_patterns",
    "load_solution_",
    "objective",
    "patterns_of",
    "predict",
    "sample_patterns",
    "solve",
    "to_network",
    "union",
]
