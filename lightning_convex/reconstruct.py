"""Networks and convex variables, at the level of networks and solutions (MATH.md sections 2, 4).

The formulas live in :mod:`lightning_convex.mapping`; this module applies them: a network's
convex variable over a pattern set (:func:`network_variable`), and a solution rebuilt into a
new network (:func:`to_network`) or written into an existing one (:func:`load_solution_`).
"""

from __future__ import annotations

from typing import Optional

import torch

from ._checks import check_int
from .mapping import branch_variables, rebuild_branches, scatter_to_patterns
from .model import ParallelReLU, float64_parameters
from .patterns import PatternSet, patterns_of
from .solution import Solution


def branch_weights(solution: Solution, regularization: str = "path"):
    """(W1 (P, d', m), w2 (P, m) or None, w3 (P,)) for every pattern of the solution, float64."""
    patterns = solution.program.patterns
    return rebuild_branches(solution.Q.double(), patterns.s, patterns.sig, solution.program.depth,
                            regularization)


@torch.no_grad()
def network_variable(net: ParallelReLU, X, patterns: PatternSet, count_dropped: bool = False):
    """The network's convex variable over ``patterns``: Q (P, m, d'), float64 on the net's device.

    Branch k contributes q_kj = w3_k w2_kj W1_k[:, j] to the pattern it lies in (branches sharing
    a pattern add up, which stays in the cone); branches whose pattern is not in the set (an
    empty prediction mask, so they only cost regularizer) are left out. The result is feasible and
    its objective is at most J(theta). X is raw (n, d) data or a :class:`~lightning_convex.rows.Rows`.
    With ``count_dropped``, returns (Q, number of nonzero branches left out).
    """
    if not isinstance(net, ParallelReLU):
        raise TypeError(f"expected a ParallelReLU, got {type(net).__name__}")
    expected = (patterns.hidden, patterns.depth, patterns.bias)
    actual = (net.hidden, net.depth, net.bias)
    if expected != actual:
        raise ValueError(f"the network has (hidden, depth, bias) = {actual}, the patterns need {expected}")
    index = torch.tensor(patterns_of(net, X).index_in(patterns), dtype=torch.long, device=net.W1.device)
    q = branch_variables(*float64_parameters(net))
    Q = scatter_to_patterns(q, index, len(patterns)).to(patterns.device)
    if count_dropped:
        return Q, int(((index < 0) & (q.abs().flatten(1).sum(dim=1) > 0)).sum())
    return Q


def to_network(solution: Solution, regularization: str = "path", rtol: float = 1e-9,
               branches: Optional[int] = None, dtype: Optional[torch.dtype] = None) -> ParallelReLU:
    """A :class:`ParallelReLU` with one branch per nonzero pattern of ``solution``.

    Patterns with t_p <= ``rtol`` * max t are numerical zeros and get no branch. ``branches``
    (>= the number of nonzero patterns) pads with zero branches; ``dtype`` defaults to the
    program's (float64), so the rebuilt network reproduces the convex objective to rounding. A
    new network is built whatever the solution's status (nothing is overwritten), without
    advancing the global torch RNG.
    """
    if not isinstance(solution, Solution):
        raise TypeError(f"solution must be a Solution, got {type(solution).__name__}")
    count = int(solution.active_patterns(rtol).sum())
    K = max(count, 1) if branches is None else check_int("branches", branches, minimum=1)
    if K < count:
        raise ValueError(f"the solution has {count} nonzero patterns but branches={K}")
    program = solution.program
    with torch.random.fork_rng(devices=[]):  # the initial weights are overwritten: keep the global RNG
        net = ParallelReLU(
            program.in_features, program.m, K, depth=program.depth, bias=program.bias,
            regularization=regularization,
        )
    return net.to(device=program.device, dtype=dtype or program.dtype).write_solution_(solution, rtol=rtol)


def load_solution_(net: ParallelReLU, solution: Solution, rtol: float = 1e-9,
                   allow_inexact: bool = False) -> ParallelReLU:
    """Write ``solution`` into ``net``'s K branches in place and return ``net``
    (see :meth:`ParallelReLU.load_solution_`: a non-optimal solution is refused unless
    ``allow_inexact``)."""
    if not isinstance(net, ParallelReLU):
        raise TypeError(f"net must be a ParallelReLU, got {type(net).__name__}")
    return net.load_solution_(solution, rtol=rtol, allow_inexact=allow_inexact)
