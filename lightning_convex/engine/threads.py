"""The loop's CPU thread count, chosen by timing.

On a CPU shared with other busy processes, torch's parallel regions wait for every thread they
started at each of the iteration's many small elementwise operations, and a two-thread iteration
can be several times slower than a one-thread one; on an idle CPU the extra threads speed up
the two products instead. So the loop times blocks of iterations (the spans between two
certificate checks) with torch's own thread count and with one thread, keeps the faster, and
probes the other again every REPROBE blocks (the load changes). The caller's setting is restored
at the end. Only CPU programs are affected.
"""

from __future__ import annotations

import torch

#: blocks between two probes of the thread count not in use
REPROBE = 20


class ThreadTuner:
    """Alternates torch's thread count between the caller's and one, by measured speed."""

    def __init__(self, device: torch.device, enabled: bool = True) -> None:
        self.original = torch.get_num_threads()
        self.active = bool(enabled) and device.type == "cpu" and self.original > 1
        self.speed = {}      # threads -> seconds per iteration of the latest block with them
        self.blocks = 0
        self.choice = self.original

    def block_done(self, iterations: int, seconds: float) -> None:
        """Record the block just finished and set the thread count for the next one."""
        if not self.active or iterations <= 0:
            return
        self.speed[torch.get_num_threads()] = seconds / iterations
        self.blocks += 1
        if len(self.speed) < 2:
            torch.set_num_threads(1)  # the first block ran with the caller's count: try one
            return
        self.choice = min(self.speed, key=self.speed.get)
        other = 1 if self.choice != 1 else self.original
        torch.set_num_threads(other if self.blocks % REPROBE == 0 else self.choice)

    def restore(self) -> None:
        if self.active:
            torch.set_num_threads(self.original)
