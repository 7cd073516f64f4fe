"""What a solver returns: the per-pattern variables Q, the dual point, multipliers and status."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Optional, Tuple

import torch

from .program import RestrictedProgram


class SolveStatus(str, Enum):
    """Backend-independent outcome of a solve. Only ``OPTIMAL`` counts as solved."""

    OPTIMAL = "optimal"
    INACCURATE = "inaccurate"  # stopped near a solution without meeting the tolerances
    ITERATION_LIMIT = "iteration_limit"
    TIME_LIMIT = "time_limit"
    INFEASIBLE = "infeasible"  # reported infeasible: the program always has Q = 0, so a numerical failure
    UNBOUNDED = "unbounded"  # likewise impossible in exact arithmetic (J >= 0)
    NUMERICAL_ERROR = "numerical_error"
    FAILED = "failed"  # the backend raised or returned nothing usable
    USER_LIMIT = "user_limit"  # stopped at a caller's limit, the backend does not say which (CVXPY)

    def __str__(self) -> str:
        return self.value


@dataclass
class Solution:
    """A (possibly approximate) solution of a :class:`RestrictedProgram`.

    Attributes:
        program: the program that was solved.
        Q: (P, m, d') per-pattern variables, q_pj = Q[p, j], on the program's device.
        objective: 1/2 ||A Q - y||^2 + beta sum ||q_pj||, float64, recomputed from Q.
        residual: v = y - A Q, the dual point (MATH.md section 5).
        multipliers: (mu1 (P, n, m), mu2 (P, n) or None), the cone-row multipliers (>= 0) when the
            backend provides them, else ``None``.
        status: a :class:`SolveStatus`.
        seconds: wall time of the solve.
        iterations: the backend's iteration count.
        solver: the backend's name.
        constraint_violation: max(0, -min(G Q)), recomputed from Q.
        info: backend-specific extras (raw status string, tolerances, ...).
    """

    program: RestrictedProgram
    Q: torch.Tensor
    objective: float
    residual: torch.Tensor
    multipliers: Optional[Tuple[torch.Tensor, Optional[torch.Tensor]]]
    status: SolveStatus
    seconds: float
    iterations: int
    solver: str
    constraint_violation: float
    info: dict = field(default_factory=dict)

    @property
    def is_optimal(self) -> bool:
        return self.status == SolveStatus.OPTIMAL

    @property
    def patterns(self):
        return self.program.patterns

    def group_norms(self) -> torch.Tensor:
        """||q_pj||, shape (P, m)."""
        return self.Q.norm(dim=2)

    def pattern_norms(self) -> torch.Tensor:
        """t_p = sum_j ||q_pj||, shape (P,): a pattern's share of the regularizer."""
        return self.group_norms().sum(dim=1)

    def active_patterns(self, rtol: float = 1e-9) -> torch.Tensor:
        """bool (P,): patterns whose t_p exceeds ``rtol`` times the largest t_p (numerical zeros aside)."""
        t = self.pattern_norms()
        if t.numel() == 0 or float(t.max()) == 0.0:
            return torch.zeros_like(t, dtype=torch.bool)
        return t > rtol * t.max()

    @classmethod
    def from_variable(cls, program: RestrictedProgram, Q, *, status: SolveStatus, seconds: float,
                      iterations: int, solver: str, multipliers=None, info=None) -> "Solution":
        """Build a Solution from Q, recomputing objective, residual and violation from the program."""
        Q = program.check_variable(Q)
        return cls(
            program=program,
            Q=Q,
            objective=program.objective(Q),
            residual=program.residual(Q),
            multipliers=multipliers,
            status=SolveStatus(status),
            seconds=float(seconds),
            iterations=int(iterations),
            solver=solver,
            constraint_violation=program.constraint_violation(Q),
            info=dict(info or {}),
        )

    def __repr__(self) -> str:
        return (
            f"Solution(solver={self.solver!r}, status={self.status.value!r}, objective={self.objective:.10g}, "
            f"active={int(self.active_patterns().sum())}/{self.program.P}, seconds={self.seconds:.3g}, "
            f"iterations={self.iterations}, violation={self.constraint_violation:.2e})"
        )
