"""certify on row shards held by concurrent threads equals certify on all rows in one process.

Each thread holds the rows r, r + W, ... (as the callbacks' training_shard splits them) and a
RowSync whose sum/max/cat meet at a threading.Barrier (tests/thread_shards.py). This is the
path DDP takes, without processes: every reduction certify and sample_patterns(sync=) make
must combine the shards into exactly what one process computes on all rows.
"""

from __future__ import annotations

import math

import pytest
import torch

import lightning_convex as lc
from lightning_convex.callbacks._strategy_sync import StrategySync

from thread_shards import ThreadRowSync, ThreadTrainer, own_copy, run_sharded, shard

BETA = 0.05


def make_problem(n=61, d=3, K=5, m=3, depth=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.relu(X[:, 0] - X[:, 1]) - 0.5 * torch.relu(X[:, 2]) + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
    torch.manual_seed(seed)
    net = lc.ParallelReLU(d, m, K, depth=depth, bias=True).double()
    return net, X, y


@pytest.fixture(scope="module")
def trained():
    """A network at a fixed point of its own patterns: its gap is ~1e-8 J, so the lower bound
    is the multiplier fit's, not a trivial one."""
    net, X, y = make_problem()
    lc.active_set_solve(net, X, y, BETA)
    return net, X, y


def sharded_certificates(net, X, y, size, sync_for, seed=None, **kwargs):
    def work(rank, exchange):
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        return lc.certify(own_copy(net), shard(X, rank, size), shard(y, rank, size), BETA,
                          generator=generator, sync=sync_for(exchange, rank), **kwargs)

    return run_sharded(size, work)


def assert_same_certificate(got, expected, rel=1e-9):
    scale = abs(expected.primal)
    assert got.n == expected.n
    assert got.scope == expected.scope
    assert got.num_patterns == expected.num_patterns
    assert math.isclose(got.primal, expected.primal, rel_tol=1e-12)
    assert math.isclose(got.lower_bound, expected.lower_bound, rel_tol=rel, abs_tol=rel * scale)
    assert math.isclose(got.gap, expected.gap, rel_tol=rel, abs_tol=rel * scale)
    if math.isnan(expected.max_violation):
        assert math.isnan(got.max_violation)
    else:
        assert math.isclose(got.max_violation, expected.max_violation, rel_tol=rel)


CASES = {
    "own patterns": dict(),
    "sampled and search": dict(extra_patterns=12, search=4, seed=3),
    "support below n": dict(extra_patterns=6, support=12, seed=4),
    # depth 2 on shards of 2-3 rows: many draws coincide on one shard but not on all rows, so
    # dropping duplicates must compare the patterns over every shard
    "few rows": dict(n=7, depth=2, m=1, extra_patterns=40, seed=5),
}


def check_against_one_process(net, X, y, size, kwargs, rel=1e-9):
    kwargs = dict(kwargs)
    seed = kwargs.pop("seed", None)
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    expected = lc.certify(net, X, y, BETA, generator=generator, **kwargs)
    assert expected.lower_bound <= expected.primal
    certs = sharded_certificates(net, X, y, size, ThreadRowSync, seed=seed, **kwargs)
    for cert in certs:
        assert_same_certificate(cert, expected, rel)
    if kwargs.get("extra_patterns"):
        # the sampled patterns are the same draws on every shard: each shard's rows of the
        # single-process set
        for rank, cert in enumerate(certs):
            assert torch.equal(cert.patterns.D1, expected.patterns.D1[:, rank::size])
            assert torch.equal(cert.patterns.s, expected.patterns.s)
    return expected


@pytest.mark.parametrize("size", [2, 3])
@pytest.mark.parametrize("case", list(CASES))
def test_thread_shards_equal_one_process(size, case):
    kwargs = dict(CASES[case])
    shape = {key: kwargs.pop(key) for key in ("n", "depth", "m") if key in kwargs}
    net, X, y = make_problem(**shape)
    check_against_one_process(net, X, y, size, kwargs)


@pytest.mark.parametrize("size", [2, 3])
def test_thread_shards_equal_one_process_near_the_optimum(trained, size):
    """At a gap of ~1e-8 J the multiplier fit's iterates depend on the order of the row sums, so
    the bounds agree to 1e-7 of J there, not 1e-9 (a sum off by 1e-6 still fails)."""
    net, X, y = trained
    expected = check_against_one_process(net, X, y, size, dict(support=12), rel=1e-7)
    assert expected.gap <= 1e-6 * expected.primal


def test_strategy_sync_over_thread_strategy_equals_one_process():
    """The callbacks' StrategySync (unequal shard lengths padded for an equal-shape all_gather)
    gives the single-process certificate too."""
    net, X, y = make_problem(n=62)
    expected = lc.certify(net, X, y, BETA, extra_patterns=8, support=16,
                          generator=torch.Generator().manual_seed(1))
    certs = sharded_certificates(net, X, y, 3, lambda exchange, rank: StrategySync(ThreadTrainer(exchange, rank)),
                                 seed=1, extra_patterns=8, support=16)
    for cert in certs:
        assert_same_certificate(cert, expected)


def test_strategy_sync_cat_restores_row_order():
    """cat of every shard's rows, ordered by row_ids, is the original matrix (61 rows: shards of
    21, 20, 20)."""
    X = torch.arange(61 * 2, dtype=torch.float64).reshape(61, 2)

    def work(rank, exchange):
        sync = StrategySync(ThreadTrainer(exchange, rank))
        local = shard(X, rank, 3)
        ids = sync.cat(sync.row_ids(local.shape[0], local.device))
        return sync.distributed, sync.cat(local)[torch.argsort(ids)]

    for distributed, rows in run_sharded(3, work):
        assert distributed
        assert torch.equal(rows, X)
