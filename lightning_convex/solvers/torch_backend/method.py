"""What the adapter gives each method (:class:`MethodOptions`) and what a method returns
(:class:`MethodResult` with an :class:`Outcome`, mapped to a SolveStatus by :data:`STATUS_MAP`)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple, Optional, Tuple

import torch

from ...solution import SolveStatus


class Outcome(str, Enum):
    """How a method run ended, in the method's own terms."""

    CONVERGED = "converged"  # certified gap and violation within tol
    STALLED = "stalled"  # the interior point stopped making progress
    MAX_ITER = "max_iter"
    TIME_LIMIT = "time_limit"
    NAN = "nan"  # a non-finite iterate (the last finite one is returned)
    ERROR = "error"  # the method raised (e.g. out of device memory)


#: The methods' outcomes mapped to backend-independent statuses.
STATUS_MAP = {
    Outcome.CONVERGED: SolveStatus.OPTIMAL,
    Outcome.STALLED: SolveStatus.INACCURATE,
    Outcome.MAX_ITER: SolveStatus.ITERATION_LIMIT,
    Outcome.TIME_LIMIT: SolveStatus.TIME_LIMIT,
    Outcome.NAN: SolveStatus.NUMERICAL_ERROR,
    Outcome.ERROR: SolveStatus.FAILED,
}


@dataclass(frozen=True)
class MethodOptions:
    """The checked options every method reads."""

    tol: float  # relative certified gap and feasibility tolerance
    max_iter: int
    time_limit: float  # wall seconds from ``start``
    start: float  # ``time.perf_counter()`` when the solve began
    verbose: bool


class MethodResult(NamedTuple):
    outcome: Outcome
    Q: torch.Tensor
    multipliers: Optional[Tuple[torch.Tensor, Optional[torch.Tensor]]]
    iterations: int
    info: dict
