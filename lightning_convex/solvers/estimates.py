"""What a solve will cost before anything is built: the estimates ``solver="auto"`` decides by.

Clarabel (:mod:`.clarabel_backend`) forms the prediction rows A and the cone rows G explicitly
(through dense (P, n, m, d') intermediates, so its memory grows with the explicit cone-row entries
E = P n (m + 1) d' whatever the masks are) and factorises the KKT system of the SOCP once per
interior-point iteration. A minimum-degree ordering takes the cheaper of two eliminations:

* variables first: each of the d' variables of a group g = (p, j) meets the rows g touches (the
  residual rows where M_pj = 1, its n first-layer cone rows, the second-layer rows where
  D1_pj = 1), c_g of them, and eliminating it costs about c_g^2 (the clique it leaves among
  them): d' sum_g c_g^2 flops, sum_g c_g^2 / 2 fill (wide data, few rows);
* rows first: each row's nonzeros multiply out into the N = P m d' variables (the sum of squared
  row counts), which end up a dense N x N block: N^3 / 3 more flops, N^2 / 2 fill (many rows,
  few columns).

Per iteration, then,

    seconds ~ flops / CLARABEL_FLOP_RATE + E * CLARABEL_SECONDS_PER_ENTRY + (P m) * CLARABEL_SECONDS_PER_CONE

(the last two: work proportional to the rows, and to the P m second-order cones), times
``CLARABEL_ITERATIONS``; memory ~ ``CLARABEL_BYTES_PER_ENTRY`` per explicit entry plus 8 bytes per
fill entry. The counts come from the pattern masks; the constants were set from Clarabel runs
of ``benchmarks/auto_estimates.py``. They are rough (BENCHMARKS.md, "What auto picks", sets the
estimates beside measured solves): what ``auto`` needs from them is the order of magnitude that
separates a solve of seconds from one of hours or of more memory than the machine has.

The engine (:mod:`lightning_convex.engine`) is matrix-free: a handful of (n, P, m) row buffers in
its working dtype and in float64 for the certificates, a few (P m, r) iterates, and the whitened
data (n x r), r <= d'.
"""

from __future__ import annotations

import math
import os
import resource
from dataclasses import dataclass
from typing import Optional

import torch

#: interior-point iterations a Clarabel solve of a restricted program takes (the high end of the
#: counts behind BENCHMARKS.md, "What auto picks")
CLARABEL_ITERATIONS = 25
#: sustained flops per second of the clique eliminations of Clarabel's LDL factorisation
CLARABEL_FLOP_RATE = 1e9
#: seconds per explicit cone-row entry and iteration
CLARABEL_SECONDS_PER_ENTRY = 1.5e-7
#: seconds per second-order cone and iteration
CLARABEL_SECONDS_PER_CONE = 4e-6
#: bytes per explicit cone-row entry (dense intermediates, index arrays, the sparse matrices,
#: the stacked constraint matrix, Clarabel's copy and its factor)
CLARABEL_BYTES_PER_ENTRY = 250.0
#: the engine's (n, P, m) buffers: counted in units of one buffer of the working dtype
ENGINE_ROW_BUFFERS = 14
#: the engine's float64 (n, P, m) buffers (certificates, multipliers in the program's layout)
ENGINE_ROW_BUFFERS_64 = 6
#: the engine's (P m, r) iterates and the whitened data's copies (n x r)
ENGINE_ITERATE_BUFFERS = 12
ENGINE_DATA_COPIES = 3


@dataclass(frozen=True)
class Estimate:
    """A solve's estimated cost on the program's device (see the module notes).

    Attributes:
        clarabel_seconds: Clarabel's wall time (building plus iterations).
        clarabel_bytes: Clarabel's peak memory (building and the factor).
        engine_bytes: the engine's peak memory (its buffers, on the program's device).
        available_bytes: memory the process can still use on the program's device (``None``
            when unknown).
        cone_entries: E = P n (m + 1) d', the explicit cone-row entries.
    """

    clarabel_seconds: float
    clarabel_bytes: float
    engine_bytes: float
    available_bytes: Optional[float]
    cone_entries: int


def cone_entries(program) -> int:
    """P n (m + 1) d' (depth 3) or P n m d' (depth 2): the entries of the explicit cone rows G."""
    blocks = program.m + (1 if program.depth == 3 else 0)
    return program.P * program.n * blocks * program.d


def group_row_counts(program) -> torch.Tensor:
    """c_g (P, m), float64: the rows of the explicit SOCP a variable of group g = (p, j) meets: the
    residual rows with M_pj = 1, its n first-layer cone rows, the second-layer rows with D1_pj = 1."""
    pats = program.patterns
    D1 = pats.D1.to(torch.float64)
    M = D1 if pats.D2 is None else D1 * pats.D2[:, :, None]
    return M.sum(dim=1) + program.n + (0.0 if pats.D2 is None else D1.sum(dim=1))


def _clarabel_costs(program):
    """(seconds, bytes) of Clarabel on ``program`` (module notes)."""
    P, n, m, d = program.P, program.n, program.m, program.d
    N = P * m * d
    pats = program.patterns
    D1 = pats.D1.to(torch.float64)
    M = D1 if pats.D2 is None else D1 * pats.D2[:, :, None]
    # variables first: group g's d' variables each leave a clique on the c_g rows they meet
    cliques = float(group_row_counts(program).square().sum())
    variables_first = (d * cliques, cliques / 2.0)
    # rows first: each row's entries multiply out into the variables, which end up dense (N^2)
    products = float((M.sum(dim=(0, 2)) * d).square().sum()) + P * n * m * float(d) ** 2
    if pats.D2 is not None:
        products += float((D1.sum(dim=2) * d).square().sum())
    rows_first = (products + N ** 3 / 3.0, N * N / 2.0)
    flops, fill = min(variables_first, rows_first)
    entries = cone_entries(program)
    per_iteration = (flops / CLARABEL_FLOP_RATE + entries * CLARABEL_SECONDS_PER_ENTRY
                     + P * m * CLARABEL_SECONDS_PER_CONE)
    return CLARABEL_ITERATIONS * per_iteration, CLARABEL_BYTES_PER_ENTRY * entries + 8.0 * fill


def engine_bytes(program, dtype: torch.dtype = torch.float32) -> float:
    """The engine's peak memory for ``program`` with passes in ``dtype`` (module notes)."""
    item = torch.empty((), dtype=dtype).element_size()
    rows = program.P * program.n * program.m
    r = min(program.n, program.d)
    return (rows * (ENGINE_ROW_BUFFERS * item + ENGINE_ROW_BUFFERS_64 * 8)
            + ENGINE_ITERATE_BUFFERS * program.P * program.m * r * 8
            + ENGINE_DATA_COPIES * program.n * r * 8 + 2 * program.d * program.d * 8)


def _meminfo_available() -> Optional[float]:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _address_space_left() -> Optional[float]:
    """What an address-space limit (``ulimit -v``) leaves this process, or ``None`` without one."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    return float(soft) - float(line.split()[1]) * 1024
    except OSError:
        pass
    return float(soft)


def available_bytes(device: torch.device) -> Optional[float]:
    """Memory the process can still allocate on ``device``: free CUDA memory, or on the CPU the
    kernel's available memory capped by an address-space limit; ``None`` when unknown."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return float(free)
    if device.type != "cpu":
        return None
    found = [x for x in (_meminfo_available(), _address_space_left()) if x is not None]
    return min(found) if found else None


def estimate(program, dtype: torch.dtype = torch.float32) -> Estimate:
    """The :class:`Estimate` of ``program`` on its own device (engine passes in ``dtype``)."""
    seconds, nbytes = _clarabel_costs(program)
    return Estimate(clarabel_seconds=seconds, clarabel_bytes=nbytes, engine_bytes=engine_bytes(program, dtype),
                    available_bytes=available_bytes(program.device), cone_entries=cone_entries(program))


def describe_bytes(x: Optional[float]) -> str:
    if x is None or not math.isfinite(x):
        return "unknown"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if x >= size:
            return f"{x / size:.3g} {unit}"
    return f"{x:.0f} B"
