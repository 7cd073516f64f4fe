"""The ``"alm"`` warm start: (Q, multipliers, info) from a Solution, a network or a Q tensor."""

from __future__ import annotations

import copy

import torch

from ...model import ParallelReLU
from ...program import RestrictedProgram
from ...reconstruct import network_variable
from ...solution import Solution


def _same_patterns(a, b) -> bool:
    """The same patterns in the same order (a Solution's multipliers are indexed by them)."""
    if a is b:
        return True
    if (len(a), a.n, a.hidden, a.depth, a.bias) != (len(b), b.n, b.hidden, b.depth, b.bias):
        return False
    b = b.to(a.device)
    same_d2 = a.D2 is None or torch.equal(a.D2, b.D2)
    return same_d2 and torch.equal(a.D1, b.D1) and torch.equal(a.s, b.s) and torch.equal(a.sig, b.sig)


@torch.no_grad()
def warm_start_variable(program: RestrictedProgram, warm_start):
    """(Q0, (mu1, mu2) or None, info) from a Solution over the same patterns, a ParallelReLU, or
    a tensor Q of the program's shape (P, m, d').

    A network contributes q_kj = w3_k w2_kj W1_k[:, j] (depth 2: w3_k u_k) to the pattern of S
    that branch k lies in (found with :func:`patterns_of` on the program's rows); branches whose
    pattern is not in S are dropped (counted in the info), and branches sharing a pattern add up,
    which stays in the cone and does not increase sum ||q_pj||.
    """
    if isinstance(warm_start, Solution):
        if not _same_patterns(program.patterns, warm_start.program.patterns):
            raise ValueError("warm_start is a Solution over a different pattern set than the program's")
        mult = warm_start.multipliers
        if mult is not None:
            mu1, mu2 = mult
            mu1 = mu1.to(device=program.device, dtype=program.dtype).clamp_min(0)
            mu2 = None if mu2 is None else mu2.to(device=program.device, dtype=program.dtype).clamp_min(0)
            mult = (mu1, mu2)
        Q = program.check_variable(warm_start.Q.to(program.device)).clone()
        return Q, mult, {"warm_start": "solution"}
    if isinstance(warm_start, ParallelReLU):
        net = warm_start
        if net.W1.device != program.device:
            # move the (small) network to the program's device, never the program's data
            net = copy.deepcopy(net).to(program.device)
        Q, dropped = network_variable(net, program.rows, program.patterns, count_dropped=True)
        return Q.to(program.dtype), None, {"warm_start": "network", "warm_start_dropped_branches": dropped}
    if isinstance(warm_start, torch.Tensor):
        # a convex variable Q itself (what active_set_solve passes)
        return program.check_variable(warm_start).clone(), None, {"warm_start": "variable"}
    raise TypeError(f"warm_start must be a Solution, a ParallelReLU or a (P, m, d') tensor Q, "
                    f"got {type(warm_start).__name__}")

