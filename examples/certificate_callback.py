"""Add duality-gap certificates to an existing Lightning training run, then certify the saved
checkpoint afterwards.

    python examples/certificate_callback.py --data-dir ../shared/data/uci
"""

import argparse
import tempfile
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

import lightning_convex as lc
from lightning_convex.callbacks import ConvexCertificate
from lightning_convex.data import load_uci


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--name", default="acute-inflammation")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()

    torch.manual_seed(0)
    data = load_uci(args.name, args.data_dir, split="all")
    X, y = data.X_train, data.y_train
    model = lc.ParallelReLURegressor(lc.ParallelReLU(data.d, 7, 10, bias=True), beta=0.1)
    loader = DataLoader(TensorDataset(X, y), batch_size=max(1, len(y) // 8), shuffle=True)

    # the one line a user adds: certificates every 10 epochs, with a non-optimality search
    certificate = ConvexCertificate(every_n_epochs=10, search=32)
    folder = Path(tempfile.mkdtemp())
    trainer = pl.Trainer(max_epochs=args.epochs, callbacks=[certificate], logger=False,
                         default_root_dir=folder, enable_model_summary=False,
                         enable_progress_bar=False)
    trainer.fit(model, loader)
    print("last logged certificate:", certificate.last_metrics)

    # later: certify a saved checkpoint without the trainer
    path = folder / "final.ckpt"
    trainer.save_checkpoint(path)
    state = torch.load(path, weights_only=True)["state_dict"]
    net = lc.ParallelReLU(data.d, 7, 10, bias=True)
    net.load_state_dict({k[len("net."):]: v for k, v in state.items() if k.startswith("net.")})
    cert = lc.certify(net, X, y, beta=0.1, search=32, generator=torch.Generator().manual_seed(0))
    print(f"checkpoint: J = {cert.primal:.6f} >= {cert.lower_bound:.6f} (scope: {cert.scope}), "
          f"relative gap {cert.relative_gap:.2e}, search max r.f/beta = {cert.max_violation:.3f}")


if __name__ == "__main__":
    main()
