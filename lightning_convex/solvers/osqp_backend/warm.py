"""Warm starts: a variable q from a Solution, a network or a Q, and the feasible start made of it.

A :class:`Solution`'s patterns are matched exactly where they are unchanged, otherwise to the
nearest unused old pattern (fewest differing D1/D2 entries, signs equal on the neurons its Q
uses): a few SGD steps change every pattern in some rows, so exact matching alone would seldom
keep any. A network contributes q_kj = w3_k w2_kj W1_k[:, j] through
:func:`~lightning_convex.reconstruct.network_variable`. Each pattern's q is then projected onto
its new cone (:func:`.projection.project_feasible`); a pattern whose projection still violates
its rows starts at zero.
"""

from __future__ import annotations

import copy
from typing import Optional

import numpy as np
import torch

from ...model import ParallelReLU
from ...program import RestrictedProgram
from ...reconstruct import network_variable
from ...solution import Solution
from .problem import Problem
from .projection import project_feasible


def warm_variable(program: RestrictedProgram, warm_start) -> Optional[np.ndarray]:
    """The flat variable q a ``warm_start`` (None, Solution, Q tensor/array or ParallelReLU)
    gives on this program; raises TypeError/ValueError for one that does not fit."""
    if warm_start is None:
        return None
    if isinstance(warm_start, Solution):
        return _q_from_solution(program, warm_start)
    if isinstance(warm_start, (torch.Tensor, np.ndarray)):
        return _q_from_array(program, warm_start)
    return _q_from_network(program, warm_start)


def start_point(pb: Problem, q_init: Optional[np.ndarray], feas_abs: float) -> np.ndarray:
    """The run's exactly feasible start: zero, or q_init projected onto the cones (patterns the
    projection leaves violating rows by more than ``feas_abs`` set to zero); dead groups zero."""
    if q_init is None:
        q = np.zeros(pb.N)
    else:
        # rows of a pattern that changed a little are violated a little: project the
        # pattern onto its cone (exactly feasible), zero it only where that fails
        q = q_init if np.all(np.isfinite(q_init)) else np.zeros(pb.N)
        q, _ = project_feasible(pb, q, pb.norms(q) > 0)
        q = _zero_violating_patterns(pb, q, feas_abs)
    q.reshape(pb.ng, pb.d)[pb.dead] = 0.0
    return q


def _q_from_network(program: RestrictedProgram, net) -> np.ndarray:
    """Q of a ParallelReLU on this program's pattern set (q_kj = w3_k w2_kj W1_k[:, j])."""
    if not isinstance(net, ParallelReLU):
        raise TypeError(
            f"warm_start must be a Solution, a ParallelReLU or a Q array, got {type(net).__name__}")
    net = net if net.W1.device == program.device else copy.deepcopy(net).to(program.device)
    return network_variable(net, program.rows, program.patterns).cpu().numpy().reshape(-1)


def _q_from_array(program: RestrictedProgram, Q) -> np.ndarray:
    """A convex variable given directly (the hybrid loop's Q of the network on its own set)."""
    if isinstance(Q, torch.Tensor):
        Q = Q.detach().double().cpu().numpy()
    Q = np.asarray(Q, dtype=float)
    if Q.shape != tuple(program.shape):
        raise ValueError(
            f"warm_start Q has shape {Q.shape}, the program's variable is {tuple(program.shape)}")
    if not np.all(np.isfinite(Q)):
        raise ValueError("warm_start Q has NaN or inf entries")
    return Q.reshape(-1).copy()


def _q_from_solution(program: RestrictedProgram, sol: Solution) -> np.ndarray:
    """The old solution's Q on this program's patterns.

    A pattern found unchanged takes its Q. After a few SGD steps every pattern usually differs
    in some rows (``benchmarks/solvers.py`` prints how many its changed programs keep), so an
    unmatched pattern takes the Q of the nearest unused old pattern (fewest differing D1/D2
    entries) whose signs agree on the neurons that Q uses; the caller projects it onto its cone.
    """
    old = sol.program
    if (old.n, old.d, old.m, old.depth) != (program.n, program.d, program.m, program.depth):
        raise ValueError(
            "warm_start Solution is for a program of another shape "
            f"(n, d', m, depth) = {(old.n, old.d, old.m, old.depth)}, expected "
            f"{(program.n, program.d, program.m, program.depth)}"
        )
    new_p, old_p = program.patterns, old.patterns
    where = new_p.index_in(old_p)
    Qold = sol.Q.detach().double().cpu().numpy()
    Q = np.zeros(program.shape)
    used = set()
    for p, k in enumerate(where):
        if k >= 0:
            Q[p] = Qold[k]
            used.add(k)
    # interior-point solutions carry ~1e-10 residue on zero neurons: relative threshold
    neuron_norm = np.linalg.norm(Qold, axis=2)
    on = neuron_norm > 1e-8 * max(float(neuron_norm.max()), 1e-300)
    live = [k for k in range(old.P) if k not in used and on[k].any()]
    todo = [p for p, k in enumerate(where) if k < 0]
    if live and todo:
        a, b = _pattern_bits(new_p, todo), _pattern_bits(old_p, live)
        dist = a.sum(1)[:, None] + b.sum(1)[None, :] - 2.0 * (a @ b.T)
        # the signs must agree where they matter: sig, and s on the neurons the old Q uses
        # (the sign of a dead neuron's w2 flips freely under SGD)
        s_new, s_old = new_p.s[todo].cpu().numpy(), old_p.s[live].cpu().numpy()
        clash = ((s_new[:, None, :] != s_old[None, :, :]) & on[live][None]).any(axis=2)
        clash |= new_p.sig[todo].cpu().numpy()[:, None] != old_p.sig[live].cpu().numpy()[None, :]
        dist[clash] = np.inf
        for flat in np.argsort(dist, axis=None):
            i, j = divmod(int(flat), len(live))
            if not np.isfinite(dist[i, j]):
                break
            if todo[i] is None or live[j] is None:
                continue
            Q[todo[i]] = Qold[live[j]]
            todo[i] = live[j] = None
    return Q.reshape(-1)


def _pattern_bits(patterns, index) -> np.ndarray:
    """D1 (and D2) of the indexed patterns as 0/1 rows, for Hamming distances by inner products."""
    bits = patterns.D1[index].flatten(1)
    if patterns.D2 is not None:
        bits = torch.cat([bits, patterns.D2[index]], dim=1)
    return bits.double().cpu().numpy()


def _zero_violating_patterns(pb: Problem, q: np.ndarray, feas_abs: float) -> np.ndarray:
    """q with every pattern whose cone rows it violates set to zero (zero is always feasible)."""
    if not np.all(np.isfinite(q)):
        return np.zeros(pb.N)
    gq = pb.G @ q
    bad = np.unique(pb.row_pattern[gq < -feas_abs])
    if bad.size:
        q = q.copy().reshape(pb.P, -1)
        q[bad] = 0.0
        q = q.reshape(-1)
    return q
