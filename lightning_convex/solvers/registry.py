"""The solver registry: one :class:`Backend` per solver, declaring what it can do.

``solve(program, solver=NAME, **options)`` looks the backend up, checks the options against
the ones it declares (unknown options raise), and runs it. ``solver="auto"`` reads the declared
capabilities and the program's size and device (:func:`choose_solver`) and records what it
picked and why in ``solution.info["auto"]``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable, Dict, FrozenSet, Optional, Tuple

from ..program import RestrictedProgram
from ..solution import Solution


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

    def run(self, program: RestrictedProgram, **options) -> Solution:
        self.check_options(options)
        return self.solve(program, **options)


_BACKENDS: Dict[str, Backend] = {}
#: The order ``auto`` tries backends in: the exact reference first, then the matrix-free one.
AUTO_ORDER = ("clarabel", "engine")


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
    blocks = program.m + (1 if program.depth == 3 else 0)
    return program.P * program.n * blocks * program.d


def choose_solver(program: RestrictedProgram) -> Tuple[str, str]:
    """(backend name, reason) for ``solver="auto"``: the first backend in :data:`AUTO_ORDER` that
    runs on the program's device and whose ``max_cone_entries`` admits it.

    Clarabel, the exact reference, builds the cone rows explicitly and runs on the CPU, so it
    is chosen for CPU programs up to its declared size; larger programs, and programs on other
    devices, go to the matrix-free torch backend on the program's own device.
    """
    entries = cone_entries(program)
    device = program.device.type
    for name in AUTO_ORDER:
        caps = _BACKENDS[name].capabilities
        if device not in caps.devices:
            continue
        if caps.max_cone_entries is not None and entries > caps.max_cone_entries:
            continue
        limit = "no size limit" if caps.max_cone_entries is None else f"limit {caps.max_cone_entries:.3g}"
        return name, f"{entries:.3g} explicit cone-row entries ({limit}) on {device}"
    raise ValueError(f"no registered solver runs a program of {entries:.3g} cone-row entries on {device}")


def solve(program: RestrictedProgram, solver: str = "auto", **options) -> Solution:
    """Solve the restricted program with the named backend (``"auto"``: :func:`choose_solver`).

    Common options (each backend documents its own, and unknown ones raise): ``tol`` (stopping
    tolerance), ``max_iter``, ``time_limit`` (seconds), ``verbose``, ``warm_start``. A backend
    never raises for a failed solve: it returns a Solution whose ``status`` says what happened;
    check ``solution.is_optimal``.
    """
    if not isinstance(program, RestrictedProgram):
        raise TypeError(f"program must be a RestrictedProgram, got {type(program).__name__}")
    if solver == "auto":
        name, reason = choose_solver(program)
        solution = backend(name).run(program, **options)
        solution.info["auto"] = f"{name}: {reason}"
        return solution
    return backend(solver).run(program, **options)
