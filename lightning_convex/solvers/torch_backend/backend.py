"""The ``"torch"`` adapter: options, the method choice, the Solution, and the registry entry."""

from __future__ import annotations

import resource
import time
from typing import Optional

import torch

from ...model import ParallelReLU
from ...program import RestrictedProgram
from ...solution import Solution
from ..registry import Backend, Capabilities
from .alm import alm
from .ipm import ipm
from .method import STATUS_MAP, MethodOptions, MethodResult, Outcome
from .warm import warm_start_variable

METHODS = ("auto", "ipm", "alm")
#: ``"auto"`` uses the interior point while its dense (N + P m)^2 system has at most this many
#: entries and forming G^T (Z/S) G (about P n (m d')^2 flops) stays below IPM_MAX_FLOPS.
IPM_MAX_ENTRIES = 4096 ** 2
IPM_MAX_FLOPS = 2e9
DEFAULT_MAX_ITER = {"ipm": 100, "alm": 50000}
DEFAULT_TOL = {"ipm": 1e-6, "alm": 1e-3}


def choose_method(program: RestrictedProgram) -> str:
    """``"ipm"`` when the dense Newton system is small enough, else the matrix-free ``"alm"``."""
    size = program.num_variables + program.P * program.m
    flops = program.P * program.n * (program.m * program.d) ** 2 + program.n * program.num_variables ** 2
    return "ipm" if size * size <= IPM_MAX_ENTRIES and flops <= IPM_MAX_FLOPS else "alm"


def _check_options(tol, max_iter, time_limit, dtype, method):
    if tol is not None and (not isinstance(tol, (int, float)) or isinstance(tol, bool) or not (0 < tol < 1)):
        raise ValueError(f"tol must be a number in (0, 1), got {tol!r}")
    if max_iter is not None and (not isinstance(max_iter, int) or isinstance(max_iter, bool) or max_iter < 1):
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    if not isinstance(time_limit, (int, float)) or isinstance(time_limit, bool) or not time_limit > 0:
        raise ValueError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
        raise ValueError(f"dtype must be a torch floating dtype (torch.float32 / torch.float64), got {dtype!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")


class _Memory:
    """Peak memory of the solve: CUDA's allocator peak, or the process's peak RSS on the CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

    def report(self) -> dict:
        if self.device.type == "cuda":
            return {"peak_memory_bytes": int(torch.cuda.max_memory_allocated(self.device)),
                    "memory_method": "torch.cuda.max_memory_allocated (peak reset at solve start)"}
        # ru_maxrss is KiB on Linux: the process-wide peak, an upper bound on the solve's own use
        return {"peak_memory_bytes": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024,
                "memory_method": "getrusage ru_maxrss (process peak RSS, not reset per solve)"}


def solve_torch(program: RestrictedProgram, tol: Optional[float] = None, max_iter: Optional[int] = None,
                time_limit: float = float("inf"), warm_start=None, dtype: Optional[torch.dtype] = None,
                verbose: bool = False, method: str = "auto", crossover: bool = True) -> Solution:
    """Solve ``program`` on its device (package docstring: methods, stopping rule, statuses).

    Args:
        tol: relative certified gap and feasibility tolerance (default 1e-6 for ``"ipm"``,
            1e-3 for ``"alm"``, whose tail is slow).
        max_iter: interior-point iterations (default 100) or FISTA iterations for ``"alm"``
            (default 50000; each is one forward and one adjoint pass).
        time_limit: wall seconds.
        warm_start: a :class:`Solution` over the same patterns (Q and multipliers reused), the
            :class:`ParallelReLU` the patterns came from (q_kj = w3_k w2_kj W1_k[:, j]), or a
            tensor Q (P, m, d'). Used by ``"alm"``; the interior point starts from its own
            central point and ignores it.
        dtype: working precision of ``"alm"`` (default: the program's). ``torch.float32`` halves
            memory and is much faster on GPUs; the certified gap then cannot go much below
            float32's rounding. The interior point always works in float64.
        verbose: print progress.
        method: ``"auto"`` (:func:`choose_method`), ``"ipm"`` or ``"alm"``.
        crossover: ``"ipm"`` only: finish on the face the interior point identifies with the
            exact face polish (:mod:`.crossover`); without it the interior point alone usually
            certifies a relative gap of about 1e-6 on degenerate programs and no better.

    Returns:
        a :class:`Solution` with multipliers, and in ``info``: ``method``, ``gap`` (relative
        certified gap of the last check), ``lower_bound``, ``violation_rel``, ``peak_memory_bytes``
        and ``memory_method``, plus method-specific counters.
    """
    if not isinstance(program, RestrictedProgram):
        raise TypeError(f"program must be a RestrictedProgram, got {type(program).__name__}")
    _check_options(tol, max_iter, time_limit, dtype, method)
    if not isinstance(crossover, bool):
        raise ValueError(f"crossover must be True or False, got {crossover!r}")
    start = time.perf_counter()
    memory = _Memory(program.device)
    if method == "auto":
        method = choose_method(program)
    options = MethodOptions(tol=DEFAULT_TOL[method] if tol is None else tol,
                            max_iter=max_iter or DEFAULT_MAX_ITER[method], time_limit=time_limit,
                            start=start, verbose=verbose)
    warm = None
    if warm_start is not None:
        if method == "alm":
            warm = warm_start_variable(program, warm_start)  # a bad warm start is a user error: raise
        elif not isinstance(warm_start, (Solution, ParallelReLU, torch.Tensor)):
            raise TypeError(f"warm_start must be a Solution, a ParallelReLU or a (P, m, d') tensor Q, "
                            f"got {type(warm_start).__name__}")
    info = {"method": method, "tol": options.tol, "device": str(program.device)}
    try:
        if method == "ipm":
            info["dtype"] = "float64"
            if warm_start is not None:
                info["warm_start"] = "ignored (interior point)"
            result = ipm(program, options, crossover)
        else:
            dtype = dtype or program.dtype
            info["dtype"] = str(dtype).replace("torch.", "")
            result = alm(program, options, warm, dtype)
    except Exception as exc:  # a failed solve is a status, never an exception downstream
        result = MethodResult(Outcome.ERROR, program.zeros(), None, 0, {"error": repr(exc)})
    info.update(result.info)
    info.update(memory.report())
    mult = result.multipliers
    if mult is not None:
        mu1, mu2 = mult
        finite = bool(torch.isfinite(mu1).all()) and (mu2 is None or bool(torch.isfinite(mu2).all()))
        # non-finite multipliers certify nothing: hand back none rather than poison a certificate
        mult = (mu1.to(program.dtype), None if mu2 is None else mu2.to(program.dtype)) if finite else None
    return Solution.from_variable(
        program, result.Q.to(program.dtype), status=STATUS_MAP[result.outcome],
        seconds=time.perf_counter() - start, iterations=result.iterations, solver="torch",
        multipliers=mult, info=info,
    )


BACKEND = Backend.from_function(
    "torch", solve_torch,
    Capabilities(warm_start=True, multipliers=True, devices=("cpu", "cuda"), max_cone_entries=None,
                 exact=False),
    "matrix-free on the program's device (interior point small, augmented Lagrangian large)",
)
