"""Carried engine state against a cold start, at a fixed number of engine iterations per
certificate (deterministic: no clock), over the epochs of one training run on Fashion-MNIST.

After every epoch of Adam (batch 256, lr 1e-3, beta 1, K = 10, m = 10, bias, class 0 one-vs-rest,
standardised pixels) the network is certified twice with ``method="engine", max_iter=ITERS``:
cold, and continuing the previous epoch's certificate (``warm_start``). Prints J and both bounds.

    python benchmarks/certificate_warm.py 2000 10 6     # n, iterations per certificate, epochs
"""

import json
import sys

import torch

import lightning_convex as lc
from lightning_convex.fashion_mnist import load_fashion_mnist


def main(n, iters, epochs):
    torch.set_num_threads(1)
    ds = load_fashion_mnist().subsample(n, 100, seed=1)
    X, y = ds.X_train.float(), ds.targets(0).float()
    torch.manual_seed(0)
    net = lc.ParallelReLU(784, 10, 10, bias=True)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    warm = None
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, 256):
            batch = perm[i:i + 256]
            optimizer.zero_grad()
            loss = 0.5 * (net(X[batch]) - y[batch]).square().sum() + net.regularizer() * len(batch) / n
            loss.backward()
            optimizer.step()
        cold = lc.certify(net, X, y, 1.0, method="engine", max_iter=iters)
        warm = lc.certify(net, X, y, 1.0, method="engine", max_iter=iters, warm_start=warm)
        print(json.dumps(dict(epoch=epoch, J=round(cold.primal, 3), cold=round(cold.lower_bound, 4),
                              cold_v=cold.info["v"], warm=round(warm.lower_bound, 4), warm_v=warm.info["v"],
                              total_iterations=warm.info["total_iterations"])), flush=True)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))
