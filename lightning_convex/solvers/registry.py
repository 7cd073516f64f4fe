"""The solver registry: one :class:`Backend` per solver, declaring what it can do.

``solve(program, solver=NAME, **options)`` looks the backend up, checks the options against
the ones it declares (unknown options raise), and runs it. ``solver="auto"`` reads the declared
capabilities and the program's size and device (:func:`choose_solver`) and records what it
picked and why in ``solution.info["auto"]``.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import dataclass, field
from typing import Callable, Dict, FrozenSet, Optional, Tuple

from .. import monitor
from ..program import RestrictedProgram
from ..solution import Solution
from . import estimates


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do.

    Attributes:
        warm_start: uses a ``warm_start`` (a Solution, a network, or a variable Q); backends
            without it accept and ignore the option.
        multipliers: returns cone multipliers (for certificates and warm starts).
        devices: device types it computes on (a program elsewhere is copied to the first).
        max_cone_entries: the largest program it is meant for, in explicit cone-row entries
            P n (m + 1) d' (what building G costs); ``None`` for matrix-free backends.
        exact: an interior-point reference (optimal to its tolerance whenever it says so).
    """

    warm_start: bool = False
    multipliers: bool = False
    devices: Tuple[str, ...] = ("cpu",)
    max_cone_entries: Optional[int] = None
    exact: bool = False


@dataclass(frozen=True)
class Backend:
    """A solver adapter: ``solve(program, **options) -> Solution`` and its declared capabilities.

    ``options`` are the keyword names it accepts (read from ``solve``'s signature by default);
    ``None`` passes every option through (a backend that forwards options to another library).
    """

    name: str
    solve: Callable[..., Solution]
    capabilities: Capabilities = field(default_factory=Capabilities)
    options: Optional[FrozenSet[str]] = None
    description: str = ""

    @classmethod
    def from_function(cls, name: str, fn: Callable[..., Solution], capabilities: Capabilities,
                      description: str = "") -> "Backend":
        params = list(inspect.signature(fn).parameters.values())[1:]  # after the program
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            options = None
        else:
            options = frozenset(p.name for p in params)
        return cls(name, fn, capabilities, options, description)

    def check_options(self, options: dict) -> None:
        """Raise ``ValueError`` naming any option this backend does not accept."""
        if self.options is None:
            return
        unknown = sorted(set(options) - self.options)
        if unknown:
            raise ValueError(f"solver {self.name!r} does not accept option(s) {', '.join(map(repr, unknown))}; "
                             f"it accepts {', '.join(sorted(self.options))}")

    def default(self, option: str):
        """The default value of ``option`` in the backend's ``solve`` signature (``None`` if none)."""
        param = inspect.signature(self.solve).parameters.get(option)
        return None if param is None or param.default is inspect.Parameter.empty else param.default

    def run(self, program: RestrictedProgram, **options) -> Solution:
        self.check_options(options)
        return self.solve(program, **options)


_BACKENDS: Dict[str, Backend] = {}
#: The order ``auto`` tries backends in: the exact reference first, then the matrix-free one.
AUTO_ORDER = ("clarabel", "engine")
#: ``auto`` gives Clarabel only programs it is estimated to solve within this many seconds: it runs
#: in native code, so Ctrl-C or SIGTERM take effect only when the call returns
CLARABEL_MAX_SECONDS = 10.0
#: ``auto`` gives a backend only programs whose estimated memory is at most this fraction of what
#: the device has left (the estimates are rough; the rest is headroom)
MEMORY_FRACTION = 0.5
#: the ``time_limit`` (seconds) :func:`solve` passes to a backend that takes one when the caller
#: gives none: a safety net, never unbounded, above every solve ``auto`` gives Clarabel
DEFAULT_TIME_LIMIT = 600.0


def register(backend: Backend) -> Backend:
    """Register ``backend`` under its name (replacing one of the same name)."""
    _BACKENDS[backend.name] = backend
    return backend


def backend(name: str) -> Backend:
    """The registered backend called ``name`` (ValueError naming the available ones otherwise)."""
    if name not in _BACKENDS:
        raise ValueError(f"unknown solver {name!r}; available: {', '.join(available_solvers())}")
    return _BACKENDS[name]


def available_solvers() -> list:
    return sorted(_BACKENDS) + ["auto"]


def cone_entries(program: RestrictedProgram) -> int:
    """P n (m + 1) d': the entries of the explicit cone rows G (the cost of building them)."""
    return estimates.cone_entries(program)


@dataclass(frozen=True)
class Choice:
    """What ``auto`` picked: the backend's ``name``, the ``reason`` in words, and the
    :class:`~.estimates.Estimate` it decided by."""

    name: str
    reason: str
    estimate: estimates.Estimate

    def __iter__(self):  # (name, reason), as a tuple
        return iter((self.name, self.reason))

    def __getitem__(self, index):
        return (self.name, self.reason)[index]


def _refusal(name: str, caps: Capabilities, program: RestrictedProgram, est: estimates.Estimate,
             time_limit: Optional[float]) -> Optional[str]:
    """Why backend ``name`` must not get ``program`` (``None`` when it may)."""
    device = program.device.type
    if device not in caps.devices:
        return f"{name} does not run on {device}"
    if caps.max_cone_entries is not None and est.cone_entries > caps.max_cone_entries:
        return f"{est.cone_entries:.3g} explicit cone-row entries exceed {name}'s limit {caps.max_cone_entries:.3g}"
    nbytes = est.clarabel_bytes if name == "clarabel" else est.engine_bytes if name == "engine" else None
    if nbytes is not None and est.available_bytes is not None and nbytes > MEMORY_FRACTION * est.available_bytes:
        return (f"{name} would need ~{estimates.describe_bytes(nbytes)}, over {MEMORY_FRACTION:.0%} of the "
                f"{estimates.describe_bytes(est.available_bytes)} available on {device}")
    if name == "clarabel":
        # native code: it stops only at its own limits, so a signal waits for the whole call
        limit = CLARABEL_MAX_SECONDS if time_limit is None else min(CLARABEL_MAX_SECONDS, time_limit)
        if est.clarabel_seconds > limit:
            return f"clarabel would take ~{est.clarabel_seconds:.3g} s, over {limit:.3g} s"
    return None


def choose_solver(program: RestrictedProgram, time_limit: Optional[float] = None) -> Choice:
    """The backend ``solver="auto"`` runs ``program`` with: the first in :data:`AUTO_ORDER` that
    runs on the program's device, whose declared ``max_cone_entries`` admits it, whose estimated
    memory (:mod:`.estimates`) is at most :data:`MEMORY_FRACTION` of what the device has left
    and, for Clarabel (native code, interrupted only between calls), whose estimated time is at
    most :data:`CLARABEL_MAX_SECONDS` and ``time_limit``.

    So Clarabel, the exact reference, gets the small CPU programs it solves in seconds; larger
    programs and programs on other devices go to the matrix-free engine on the program's own
    device. Nothing is built here. Returns a :class:`Choice` (unpacks as ``(name, reason)``);
    raises ``MemoryError`` when no backend fits (before anything is allocated).
    """
    est = estimates.estimate(program)
    refusals = []
    for name in AUTO_ORDER:
        why_not = _refusal(name, _BACKENDS[name].capabilities, program, est, time_limit)
        if why_not is None:
            picked = [f"on {program.device.type}"]
            if name == "clarabel":
                picked.append(f"estimated {est.clarabel_seconds:.2g} s and {estimates.describe_bytes(est.clarabel_bytes)}")
            elif name == "engine":
                picked.append(f"estimated {estimates.describe_bytes(est.engine_bytes)}")
            picked.append(f"{estimates.describe_bytes(est.available_bytes)} available")
            return Choice(name, "; ".join(picked + refusals), est)
        refusals.append(why_not)
    raise MemoryError(f"no registered solver fits this program: {'; '.join(refusals)}")


def solve(program: RestrictedProgram, solver: str = "auto", progress: Optional[bool] = None,
          **options) -> Solution:
    """Solve the restricted program with the named backend (``"auto"``: :func:`choose_solver`).

    Common options (each backend documents its own, and unknown ones raise): ``tol`` (stopping
    tolerance), ``max_iter``, ``time_limit`` (seconds), ``verbose``, ``warm_start``. A backend
    never raises for a failed solve: it returns a Solution whose ``status`` says what happened;
    check ``solution.is_optimal``.

    Budget: a backend that takes ``time_limit`` and whose own default is unbounded gets
    :data:`DEFAULT_TIME_LIMIT` when the caller gives none, so no solve through here is unbounded
    by default (``time_limit=float("inf")`` asks for that explicitly). ``auto`` also weighs the
    time limit when it decides.

    Long solves (:mod:`lightning_convex.monitor`): a progress bar after a few seconds
    (``progress=False``: none); Ctrl-C or SIGTERM stop a backend that takes a ``callback`` (the
    engine) at its next check, and the signal then goes on to the handler installed before
    (Ctrl-C raises ``KeyboardInterrupt`` once the backend has returned). Inside
    :func:`~lightning_convex.active_set_solve` the rounds' monitor decides instead.
    """
    if not isinstance(program, RestrictedProgram):
        raise TypeError(f"program must be a RestrictedProgram, got {type(program).__name__}")
    choice = None
    if solver == "auto":
        choice = choose_solver(program, options.get("time_limit"))
        solver = choice.name
    chosen = backend(solver)
    chosen.check_options(options)
    declared = chosen.options or frozenset()
    if "time_limit" in declared and options.get("time_limit") is None:
        own = chosen.default("time_limit")
        options["time_limit"] = own if isinstance(own, (int, float)) and math.isfinite(own) else DEFAULT_TIME_LIMIT
    with monitor.Monitor(options.get("time_limit") or math.inf, f"{solver} solve", progress) as watch:
        if "callback" in declared:
            user = options.get("callback")
            options["callback"] = watch.callback if user is None else \
                (lambda record: bool(user(record)) or watch.callback(record))
        solution = chosen.run(program, **options)
    if choice is not None:
        solution.info["auto"] = f"{choice.name}: {choice.reason}"
        solution.info["auto_estimate"] = dataclasses.asdict(choice.estimate)
    return solution
