"""One Adam epoch of the sum-form objective over shuffled mini-batches, as the Fashion-MNIST
benchmarks train (imported by them; not a benchmark itself)."""

from __future__ import annotations

import torch


def adam_epoch(net, optimizer, X: torch.Tensor, y: torch.Tensor, generator: torch.Generator,
               batch_size: int = 256) -> None:
    """One pass over (X, y) in shuffled batches; the batch loss is 1/2 ||f(X_b) - y_b||^2 +
    R |b| / n, so an epoch's losses add up to J (beta = 1)."""
    n = X.shape[0]
    perm = torch.randperm(n, generator=generator)
    for i in range(0, n, batch_size):
        batch = perm[i:i + batch_size]
        optimizer.zero_grad()
        loss = 0.5 * (net(X[batch]) - y[batch]).square().sum() + net.regularizer() * len(batch) / n
        loss.backward()
        optimizer.step()
