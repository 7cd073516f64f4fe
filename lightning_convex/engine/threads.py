"""The loop's CPU thread count, chosen by timing.

On a CPU shared with other busy processes, torch's parallel regions wait for every thread they
started at each of the iteration's many small elementwise operations, and an iteration with
two threads can be many times slower than with one; on an idle CPU the extra threads speed up
the two products instead. The risk is lopsided, so the loop starts on one thread, then tries
torch's own count for a few iterations (abandoning the try at once when an iteration takes
ABANDON times longer), keeps the faster, and tries again every REPROBE iterations (the load
changes). The caller's setting is restored at the end. Only CPU programs are affected.
"""

from __future__ import annotations

import torch

#: iterations timed per setting
SAMPLE = 5
#: iterations between two tries of the setting not in use
REPROBE = 200
#: a try is abandoned when one iteration takes this many times the current setting's time
ABANDON = 3.0


class ThreadTuner:
    """Chooses between one thread and the caller's thread count by timing iterations."""

    def __init__(self, device: torch.device, enabled: bool = True) -> None:
        self.original = torch.get_num_threads()
        self.active = bool(enabled) and device.type == "cpu" and self.original > 1
        self.choice = 1 if self.active else self.original
        self.seconds = {}        # threads -> mean seconds per iteration, latest sample
        self.samples = []        # the sample being taken with the current setting
        self.since_probe = 0
        if self.active:
            torch.set_num_threads(1)

    def iteration_done(self, seconds: float) -> None:
        """Record one (non-check) iteration's time and set the thread count for the next."""
        if not self.active:
            return
        current = torch.get_num_threads()
        probing = current != self.choice
        if probing and self.choice in self.seconds and seconds > ABANDON * self.seconds[self.choice]:
            self.seconds[current] = seconds
            self._set(self.choice)
            return
        self.samples.append(seconds)
        if len(self.samples) < SAMPLE:
            return
        self.seconds[current] = sum(self.samples) / len(self.samples)
        self.samples = []
        if probing:
            self.choice = min(self.seconds, key=self.seconds.get)
            self._set(self.choice)
            return
        self.since_probe += SAMPLE
        if self.since_probe >= REPROBE or len(self.seconds) < 2:
            self._set(self.original if self.choice == 1 else 1)

    def _set(self, threads: int) -> None:
        torch.set_num_threads(threads)
        self.samples = []
        self.since_probe = 0

    def restore(self) -> None:
        if self.active:
            torch.set_num_threads(self.original)
