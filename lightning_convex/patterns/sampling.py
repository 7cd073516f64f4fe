"""Random patterns per the paper's Remark 3 (MATH.md section 3): D1 from Gaussian first-layer
weights, D2 from a forward pass with a Gaussian second layer, signs from the random w2 and w3.

Everything is drawn from the generator given, on the generator's device, and moved to the
data's device afterwards, so the same seed gives the same patterns on every device. Without a
generator the draws come from a private one (:func:`private_generator`): adding a certificate or
a warm start to a training run never changes the run's own random numbers.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from .._checks import check_architecture, check_int
from ..rows import ROW_CHUNK, Rows, RowSync
from .reading import read_branches
from .set import PatternSet


def private_generator(generator: Optional[torch.Generator] = None) -> torch.Generator:
    """``generator`` itself, or a new CPU generator seeded with ``torch.initial_seed()``: reading
    the initial seed does not advance the global RNG, and the draws stay reproducible under
    ``torch.manual_seed``."""
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        return generator
    return torch.Generator(device="cpu").manual_seed(torch.initial_seed())


def draw_branches(count: int, feature_dim: int, hidden: int, depth: int,
                  generator: Optional[torch.Generator], device, dtype=torch.float64,
                  output_weights: bool = True) -> Tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Gaussian (W1 (C, d', m), w2 (C, m) or None for depth 2, w3 (C,) or None without
    ``output_weights``), drawn in that order from ``generator`` (a private one when ``None``, see
    :func:`private_generator`) and moved to ``device``."""
    generator = private_generator(generator)
    opts = dict(generator=generator, device=generator.device, dtype=dtype)
    W1 = torch.randn(count, feature_dim, hidden, **opts).to(device)
    w2 = torch.randn(count, hidden, **opts).to(device) if depth == 3 else None
    w3 = torch.randn(count, **opts).to(device) if output_weights else None
    return W1, w2, w3


@torch.no_grad()
def sample_patterns(
    X,
    count: int,
    hidden: int,
    generator: Optional[torch.Generator] = None,
    depth: int = 3,
    bias: bool = False,
    chunk_size: int = ROW_CHUNK,
    sync: Optional[RowSync] = None,
) -> PatternSet:
    """Random patterns per the paper's Remark 3, on X's device.

    D1 = 1[X U >= 0] for Gaussian U (d' x m); D2 from a forward pass with a Gaussian w2; the signs
    s, sig follow from a random w3 sign and w2 as for a network. Duplicates and patterns with an
    empty prediction mask (which can only contribute zero) are dropped, so at most ``count``
    patterns come back. X is raw (n, d) data or a :class:`~lightning_convex.rows.Rows`.
    """
    check_int("count", count)
    check_int("hidden", hidden, minimum=1)
    check_architecture(depth, hidden)
    rows = Rows.prepare(X, bias=bias, dtype=torch.float64)
    W1, w2, w3 = draw_branches(count, rows.feature_dim, hidden, depth, generator, rows.device)
    patterns = read_branches(rows.features, W1, w2, w3, bias, chunk_size=chunk_size)
    if sync is None or not sync.distributed:
        return patterns.select(~patterns.is_degenerate()).unique()
    live = sync.max((~patterns.is_degenerate()).to(torch.float64)) > 0
    keys = sync.cat(patterns.fingerprints()[None]).T.tolist()  # (P, processes)
    first: dict = {}
    keep = [i for i in range(len(patterns)) if bool(live[i]) and first.setdefault(tuple(keys[i]), i) == i]
    return patterns.select(torch.tensor(keep, dtype=torch.long, device=patterns.device))
