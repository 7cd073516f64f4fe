"""The pattern set: P activation patterns p = (D1, D2, s, sig) over the same n rows (MATH.md
section 2), with the set operations the pipeline needs (select, union, unique, lookup).

A depth-2 pattern has m = 1, no D2 (``D2 is None``) and s = sig.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

import torch


@dataclass(frozen=True)
class PatternSet:
    """P activation patterns over the same n rows.

    Attributes:
        D1: bool (P, n, m), first-ReLU patterns.
        D2: bool (P, n), second-ReLU patterns; ``None`` for depth 2.
        s: int8 (P, m) in {-1, +1}, the first-layer cone signs.
        sig: int8 (P,) in {-1, +1}, the output signs.
        bias: whether the rows are X with a constant-1 column appended.
    """

    D1: torch.Tensor
    D2: Optional[torch.Tensor]
    s: torch.Tensor
    sig: torch.Tensor
    bias: bool = False

    def __post_init__(self):
        D1, D2, s, sig = self.D1, self.D2, self.s, self.sig
        if D1.dim() != 3:
            raise ValueError(f"D1 must have shape (P, n, m), got {tuple(D1.shape)}")
        P, n, m = D1.shape
        if D1.dtype != torch.bool:
            raise ValueError("D1 must be a bool tensor")
        if D2 is not None and (D2.dtype != torch.bool or tuple(D2.shape) != (P, n)):
            raise ValueError(f"D2 must be a bool tensor of shape ({P}, {n}), got {tuple(D2.shape)}")
        if D2 is None and m != 1:
            raise ValueError("a depth-2 pattern set (D2 is None) must have m = 1")
        if tuple(s.shape) != (P, m) or tuple(sig.shape) != (P,):
            raise ValueError(f"s must have shape ({P}, {m}) and sig ({P},)")
        for name, t in (("s", s), ("sig", sig)):
            if t.numel() and not bool(((t == 1) | (t == -1)).all()):
                raise ValueError(f"{name} entries must be +1 or -1")
        if D2 is None and P and not torch.equal(s[:, 0], sig):
            raise ValueError("depth-2 patterns must have s == sig")

    # -- shape -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.D1.shape[0]

    @property
    def n(self) -> int:
        return self.D1.shape[1]

    @property
    def hidden(self) -> int:
        return self.D1.shape[2]

    @property
    def depth(self) -> int:
        return 2 if self.D2 is None else 3

    @property
    def device(self) -> torch.device:
        return self.D1.device

    def __repr__(self) -> str:
        return (
            f"PatternSet(P={len(self)}, n={self.n}, m={self.hidden}, depth={self.depth}, "
            f"bias={self.bias}, device={self.device})"
        )

    # -- derived masks -----------------------------------------------------------------------
    def is_degenerate(self) -> torch.Tensor:
        """bool (P,): patterns whose prediction mask is empty (they can only contribute zero)."""
        if self.D2 is None:
            return ~self.D1.flatten(1).any(dim=1)
        return ~(self.D1 & self.D2[:, :, None]).flatten(1).any(dim=1)

    # -- set operations ----------------------------------------------------------------------
    def to(self, device) -> "PatternSet":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return PatternSet(move(self.D1), move(self.D2), move(self.s), move(self.sig), self.bias)

    def select(self, index) -> "PatternSet":
        """The patterns at ``index`` (a bool mask or integer indices), in that order."""
        index = torch.as_tensor(index, device=self.device)
        D2 = None if self.D2 is None else self.D2[index]
        return PatternSet(self.D1[index], D2, self.s[index], self.sig[index], self.bias)

    def _check_compatible(self, other: "PatternSet") -> None:
        if (self.n, self.hidden, self.depth, self.bias) != (other.n, other.hidden, other.depth, other.bias):
            raise ValueError(
                "pattern sets differ in (n, m, depth, bias): "
                f"{(self.n, self.hidden, self.depth, self.bias)} vs "
                f"{(other.n, other.hidden, other.depth, other.bias)}"
            )

    def union(self, *others: "PatternSet") -> "PatternSet":
        """This set followed by the others, duplicates removed (first occurrence kept)."""
        return union(self, *others)

    __or__ = union

    def fingerprints(self) -> torch.Tensor:
        """int64 (P,) hash of each pattern; equal patterns have equal fingerprints.

        Integer arithmetic keeps it exact and deterministic on every device; different patterns
        collide with negligible probability, and :meth:`unique` verifies collisions anyway.
        """
        P, n, m = self.D1.shape
        gen = torch.Generator(device="cpu").manual_seed(20210)
        r1 = torch.randint(0, 2**31, (n * m,), generator=gen).to(self.device)
        r2 = torch.randint(0, 2**31, (n,), generator=gen).to(self.device)
        r3 = torch.randint(0, 2**31, (m + 1,), generator=gen).to(self.device)
        h = torch.empty(P, dtype=torch.int64, device=self.device)
        step = max(1, (1 << 24) // max(1, n * m))
        for start in range(0, P, step):
            sl = slice(start, start + step)
            # elementwise product + sum: integer matmul is not implemented on CUDA
            hc = (self.D1[sl].flatten(1).to(torch.int64) * r1).sum(dim=1)
            if self.D2 is not None:
                hc = hc + (self.D2[sl].to(torch.int64) * r2).sum(dim=1)
            signs = torch.cat([self.s[sl], self.sig[sl, None]], dim=1).to(torch.int64) > 0
            h[sl] = hc + (signs.to(torch.int64) * r3).sum(dim=1)
        return h

    def same_pattern(self, i: int, other: "PatternSet", j: int) -> bool:
        """Whether pattern i of this set equals pattern j of ``other``."""
        same_d2 = self.D2 is None or torch.equal(self.D2[i], other.D2[j])
        return (
            same_d2
            and torch.equal(self.D1[i], other.D1[j])
            and torch.equal(self.s[i], other.s[j])
            and bool(self.sig[i] == other.sig[j])
        )

    def unique(self) -> "PatternSet":
        """Duplicates removed; the first occurrence of each pattern is kept, order preserved."""
        return self.select(torch.as_tensor(self.unique_index(), dtype=torch.long))

    def unique_index(self) -> list:
        """Indices of the first occurrence of each distinct pattern, in order."""
        h = self.fingerprints().tolist()
        kept: dict = {}
        keep = []
        for i, key in enumerate(h):
            bucket = kept.setdefault(key, [])
            if any(self.same_pattern(i, self, j) for j in bucket):
                continue
            bucket.append(i)
            keep.append(i)
        return keep

    def index_in(self, other: "PatternSet") -> list:
        """For each pattern here, its index in ``other`` or -1 when absent."""
        self._check_compatible(other)
        table: dict = {}
        for j, key in enumerate(other.fingerprints().tolist()):
            table.setdefault(key, []).append(j)
        out = []
        for i, key in enumerate(self.fingerprints().tolist()):
            match = [j for j in table.get(key, []) if self.same_pattern(i, other, j)]
            out.append(match[0] if match else -1)
        return out

    def key(self) -> tuple:
        """A hashable summary of the set (sorted fingerprints), to detect a repeated set."""
        return tuple(sorted(self.fingerprints().tolist()))


def concatenate(sets: Iterable[PatternSet]) -> PatternSet:
    """Concatenate pattern sets without removing duplicates."""
    sets = list(sets)
    if not sets:
        raise ValueError("no pattern sets to concatenate")
    first = sets[0]
    for other in sets[1:]:
        first._check_compatible(other)
    sets = [first] + [p.to(first.device) for p in sets[1:]]
    D2 = None if first.D2 is None else torch.cat([p.D2 for p in sets])
    return PatternSet(
        torch.cat([p.D1 for p in sets]), D2, torch.cat([p.s for p in sets]),
        torch.cat([p.sig for p in sets]), first.bias,
    )


def union(first: PatternSet, *others: PatternSet) -> PatternSet:
    """Concatenate pattern sets over the same rows and remove duplicates."""
    return concatenate([first, *others]).unique()
