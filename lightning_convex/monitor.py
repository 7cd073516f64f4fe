"""Long solves that behave like Lightning: a deadline, a progress bar, and graceful interrupts.

A :class:`Monitor` watches one long computation (a solve, the rounds of
:func:`~lightning_convex.active_set_solve`)::

    with Monitor(time_limit=60.0, description="active set") as monitor:
        solution = engine.solve(program, time_limit=monitor.remaining(), callback=monitor.callback)
        if monitor.interrupted: ...

* **Deadline.** :meth:`Monitor.remaining` is what is left of ``time_limit``; the work hands it on as
  each solver's own ``time_limit`` (Clarabel runs in native code and only stops at its own limit).
* **Interrupts.** While the block runs, SIGINT (Ctrl-C) and SIGTERM only set
  :attr:`Monitor.interrupted`; :meth:`Monitor.callback` returns ``True`` then, which stops an engine
  solve at its next check with its best iterate, so the caller can keep what improves and stop.
  When the block ends, the previous handlers are restored and the signal is passed on to the one
  that was installed before: Python's default SIGINT handler raises ``KeyboardInterrupt`` (Lightning
  then shuts the fit down gracefully), Lightning's SIGTERM handler records the signal and stops the
  fit at its next check, and a default SIGTERM disposition terminates the process as it would
  have. Handlers can only be installed from the main thread; elsewhere signals keep their usual
  behaviour and only the deadline and the progress bar apply.
* **Progress.** Work that lasts longer than ``delay`` seconds shows a tqdm bar of the budget spent,
  with what :meth:`Monitor.update` reported (objective, certified gap, round); on a stream that is
  not a terminal it writes one line when the work ends instead of redrawn frames. ``progress=False``
  (e.g. a Trainer built with ``enable_progress_bar=False``) shows nothing.

Monitors nest: one opened while another is active (a solve inside the active-set rounds) shares
the outer one's interrupt state and progress bar and installs nothing itself.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from typing import List, Optional

#: seconds a computation runs before its progress bar appears
PROGRESS_DELAY = 3.0
#: the signals a monitor turns into a graceful stop
SIGNALS = (signal.SIGINT, signal.SIGTERM)

_STACKS = threading.local()  # each thread's active monitors, innermost last


def _active() -> List["Monitor"]:
    if not hasattr(_STACKS, "monitors"):
        _STACKS.monitors = []
    return _STACKS.monitors


def _is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class Monitor:
    """Deadline, progress display and interrupt handling for one long computation (module notes).

    Args:
        time_limit: seconds the computation may take (``inf`` for no deadline of its own).
        description: what the progress bar and the summary line call the work.
        progress: ``True`` / ``False`` to show progress or not; ``None``: show it.
        delay: seconds before anything is shown (short work stays silent).
        stream: where progress goes (default ``sys.stderr``).
    """

    def __init__(self, time_limit: float = math.inf, description: str = "solve", progress: Optional[bool] = None,
                 delay: float = PROGRESS_DELAY, stream=None) -> None:
        if not (isinstance(time_limit, (int, float)) and not isinstance(time_limit, bool) and time_limit > 0):
            raise ValueError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
        self.time_limit = float(time_limit)
        self.description = description
        self.progress = True if progress is None else bool(progress)
        self.delay = float(delay)
        self.stream = stream
        self.start = self.deadline = None
        self.outer: Optional[Monitor] = None
        self._signal: Optional[int] = None
        self._frame = None
        self._previous = {}
        self._bar = None
        self._status = ""

    # -- the block ---------------------------------------------------------------------------
    def __enter__(self) -> "Monitor":
        self.start = time.perf_counter()
        self.deadline = self.start + self.time_limit
        stack = _active()
        self.outer = stack[-1] if stack else None
        if self.outer is None and threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        stack.append(self)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        _active().remove(self)
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._close()
        if self._signal is not None and self._previous:
            self._chain(self._signal)

    def _handle(self, signum, frame) -> None:
        if self._signal is None:
            self._signal, self._frame = signum, frame

    def _chain(self, signum: int) -> None:
        """Pass the signal received during the block on to the handler installed before it."""
        previous = self._previous.get(signum)
        if callable(previous):
            previous(signum, self._frame)
        elif previous in (signal.SIG_DFL, None):
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.raise_signal(signum)  # the default disposition, as if the block had not run
        # SIG_IGN: ignored, as it would have been

    # -- what the work asks --------------------------------------------------------------------
    @property
    def interrupted(self) -> Optional[str]:
        """The name of the signal received during the block (``"SIGINT"``, ``"SIGTERM"``), else ``None``."""
        root = self._root()
        return None if root._signal is None else signal.Signals(root._signal).name

    def remaining(self) -> float:
        """Seconds left before the deadline (negative once past it; ``inf`` without one)."""
        if self.deadline is None:
            return self.time_limit
        left = self.deadline - time.perf_counter()
        return left if self.outer is None else min(left, self.outer.remaining())

    def elapsed(self) -> float:
        return 0.0 if self.start is None else time.perf_counter() - self.start

    def update(self, status: str = "") -> None:
        """Report progress (``status`` is shown beside the bar); draws at most every tenth of a second."""
        root = self._root()
        if status:
            root._status = status
        root._draw()

    def callback(self, record: dict) -> bool:
        """An engine ``callback``: shows the check's objective and certified gap; ``True`` (stop)
        once a signal was received."""
        gap = record.get("gap")
        objective = record.get("objective")
        if gap is not None and objective is not None:
            self.update(f"J {objective:.6g}, gap {gap:.2e}")
        return self.interrupted is not None

    def _root(self) -> "Monitor":
        return self if self.outer is None else self.outer._root()

    # -- display -------------------------------------------------------------------------------
    def _draw(self) -> None:
        if not self.progress or self.elapsed() < self.delay:
            return
        stream = self.stream if self.stream is not None else sys.stderr
        if not _is_terminal(stream):
            return  # one line at the end instead (see _close)
        if self._bar is None:
            from tqdm.auto import tqdm

            total = self.time_limit if math.isfinite(self.time_limit) else None
            self._bar = tqdm(total=total, desc=self.description, file=stream, leave=False, unit="s",
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s budget {postfix}"
                             if total else "{desc}: {n:.0f} s {postfix}", mininterval=0.1)
        self._bar.n = min(self.elapsed(), self._bar.total or math.inf)
        self._bar.set_postfix_str(self._status, refresh=False)
        self._bar.refresh()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.outer is not None or not self.progress or self.elapsed() < self.delay:
            return
        stream = self.stream if self.stream is not None else sys.stderr
        if _is_terminal(stream):
            return
        what = f" ({self._status})" if self._status else ""
        stop = f", stopped by {self.interrupted}" if self.interrupted else ""
        print(f"{self.description}: {self.elapsed():.1f} s of a {self.time_limit:.0f} s budget{what}{stop}",
              file=stream, flush=True)


def current() -> Optional[Monitor]:
    """The innermost active :class:`Monitor` of this thread, or ``None``."""
    stack = _active()
    return stack[-1] if stack else None
