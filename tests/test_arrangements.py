"""The exhaustive arrangements of tiny data (d' <= 2) against brute force.

The "global optimum" of the exhaustive program (Figure 4) rests on arrangements(X) holding every
pattern D = 1[X u >= 0] a direction u != 0 can produce. Brute force in numpy: a dense sweep of
angles, random Gaussian directions, every critical direction (u perpendicular to a row) exactly,
and each critical direction turned slightly either way (which lands in every arc between two
critical angles, so no arc is missed however narrow).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lightning_convex.enumerate
import lightning_convex.patterns

ARRANGEMENTS = {
    "patterns.arrangements": lightning_convex.patterns.arrangements,
    "enumerate.arrangements": lightning_convex.enumerate.arrangements,
}


def patterns_at(X, U):
    """{1[X u >= 0] for each row u of U} as a set of bool tuples."""
    return {tuple(row) for row in (U @ X.T >= 0)}


def critical_directions(X):
    """(u perpendicular to some nonzero row, both signs) and the smallest angle between two
    distinct critical directions. The data are dyadic rationals, so x . u = 0 holds exactly for
    every row on u's line (opposite rows scaled by powers of 2 included)."""
    rows = X[np.linalg.norm(X, axis=1) > 0]
    perp = np.stack([-rows[:, 1], rows[:, 0]], axis=1)
    U = np.concatenate([perp, -perp])
    angles = np.sort(np.mod(np.arctan2(U[:, 1], U[:, 0]), 2 * np.pi))
    gaps = np.diff(np.concatenate([angles, angles[:1] + 2 * np.pi]))
    return U, gaps[gaps > 1e-12].min()


def rotate(U, angle):
    c, s = np.cos(angle), np.sin(angle)
    return U @ np.array([[c, s], [-s, c]])


def generic_patterns(X, seed=0):
    """Patterns of directions off every critical angle: a sweep, random u, and each critical
    direction turned by a quarter of the narrowest arc either way."""
    rng = np.random.default_rng(seed)
    theta = np.linspace(0, 2 * np.pi, 20000, endpoint=False)
    crit, narrowest = critical_directions(X)
    U = np.concatenate([
        np.stack([np.cos(theta), np.sin(theta)], axis=1),
        rng.standard_normal((5000, 2)),
        rotate(crit, narrowest / 4),
        rotate(crit, -narrowest / 4),
    ])
    off = np.all(np.abs(U @ X[np.linalg.norm(X, axis=1) > 0].T) > 1e-12, axis=1)
    return patterns_at(X, U[off])


def opposite_ties(X, u):
    """Whether two nonzero rows with x . u = 0 point in opposite directions."""
    tie = X[(X @ u == 0) & (np.linalg.norm(X, axis=1) > 0)]
    return any(np.dot(a, b) < 0 for i, a in enumerate(tie) for b in tie[i + 1:])


def enumerated(arrangements, X):
    H = arrangements(torch.as_tensor(X))
    assert H.dtype == torch.bool and H.shape[1] == X.shape[0]
    found = {tuple(row) for row in H.numpy()}
    assert len(found) == H.shape[0]  # distinct
    return found


def with_bias(x):
    return np.stack([x, np.ones_like(x)], axis=1)


def datasets():
    rng = np.random.default_rng(7)
    x = rng.integers(-12, 13, size=8) / 4
    plain = rng.integers(-9, 10, size=(7, 2)) / 2
    return {
        # d = 1 with the bias column (the Figure-4 setting), a repeated point and x = 0 included
        "1-D with bias": with_bias(np.concatenate([x, x[:1], [0.0]])),
        # d' = 2 without bias: general position, plus a zero row and two rows on one ray
        "2-D": np.concatenate([plain, [[0.0, 0.0]], 2.5 * plain[:1]]),
    }


@pytest.mark.parametrize("name", list(ARRANGEMENTS))
@pytest.mark.parametrize("data", list(datasets()))
def test_every_direction_pattern_is_enumerated_and_every_enumerated_is_realised(name, data):
    X = datasets()[data]
    found = enumerated(ARRANGEMENTS[name], X)
    generic = generic_patterns(X)
    crit, _ = critical_directions(X)
    assert not any(opposite_ties(X, u) for u in crit)  # the data: no opposite rows
    assert any(np.sum(X @ u == 0) > 1 for u in crit)  # ... but rows that tie together
    at_critical = patterns_at(X, crit)
    # complete: every generic pattern, and every critical one
    assert generic <= found
    assert at_critical <= found
    # sound: each enumerated pattern is produced by one of the brute-force directions
    assert found <= generic | at_critical
    # the count of a 2-D arrangement of r distinct lines through the origin is 2r
    lines = {round(float(np.mod(np.arctan2(r[1], r[0]), np.pi)), 9) for r in X if np.linalg.norm(r) > 0}
    assert len(generic) == 2 * len(lines)


@pytest.mark.parametrize("name", list(ARRANGEMENTS))
def test_critical_patterns_left_out_only_where_opposite_rows_tie(name):
    """Rows x and -x: at u perpendicular to them both are 1[0 >= 0] = 1, a pattern whose cone
    forces x . q = 0. arrangements omits such patterns (their cone lies in a neighbouring arc's
    cone, with the same prediction); every other critical pattern is in the set."""
    rng = np.random.default_rng(3)
    base = rng.integers(-9, 10, size=(5, 2)) / 2
    X = np.concatenate([base, -0.5 * base[:2]])
    found = enumerated(ARRANGEMENTS[name], X)
    assert generic_patterns(X, seed=1) <= found
    crit, _ = critical_directions(X)
    assert any(opposite_ties(X, u) for u in crit)  # the data: two pairs of opposite rows
    omitted = [u for u in crit if tuple(X @ u >= 0) not in found]
    assert all(opposite_ties(X, u) for u in omitted)
    assert all(tuple(X @ u >= 0) in found for u in crit if not opposite_ties(X, u))


@pytest.mark.parametrize("name", list(ARRANGEMENTS))
def test_one_feature(name):
    """d' = 1: the two half-lines, a zero row active in both."""
    x = np.array([[1.5], [-0.3], [0.0], [2.0], [-1.0]])
    found = enumerated(ARRANGEMENTS[name], x)
    rng = np.random.default_rng(0)
    u = rng.standard_normal((100, 1))
    assert found == patterns_at(x, u[np.abs(u[:, 0]) > 0])
    assert len(found) == 2


@pytest.mark.parametrize("name", list(ARRANGEMENTS))
def test_three_features_refused(name):
    with pytest.raises(ValueError, match="d' <= 2"):
        ARRANGEMENTS[name](torch.randn(5, 3, dtype=torch.float64))
