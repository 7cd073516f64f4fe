"""The time and iteration budget of one run of the active-set method.

:class:`Stop` is raised only by a :class:`Limits` method, and a :class:`Limits` is used only by
:func:`~.run.run` and what it calls, inside the ``try`` that turns a stop into the run's status:
a spent budget never leaves a run as an exception.
"""

from __future__ import annotations

import time

from ...solution import SolveStatus


class Stop(Exception):
    """The budget is spent; ``status`` says which part (``TIME_LIMIT`` or ``ITERATION_LIMIT``)."""

    def __init__(self, status: SolveStatus):
        super().__init__(status.value)
        self.status = status


class Limits:
    """A deadline (``time.perf_counter()`` seconds) and a cap on outer iterations."""

    def __init__(self, deadline: float, max_iter: int):
        self.deadline = deadline
        self.max_iter = max_iter
        self.count = 0

    def tick(self):
        """One outer iteration (a stage-A run or an active-set cycle)."""
        self.count += 1
        if self.count > self.max_iter:
            raise Stop(SolveStatus.ITERATION_LIMIT)
        self.check_time()

    def check_time(self):
        if time.perf_counter() > self.deadline:
            raise Stop(SolveStatus.TIME_LIMIT)

    def remaining(self) -> float:
        """Seconds left for an inner solve (stops when none are)."""
        remaining = self.deadline - time.perf_counter()
        if remaining <= 0:
            self.out_of_time()
        return remaining

    def out_of_time(self):
        """An inner solver reported that it ran out of the time it was given."""
        raise Stop(SolveStatus.TIME_LIMIT)
