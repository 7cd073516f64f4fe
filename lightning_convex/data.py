"""Data sets: the embedded default (scikit-learn's diabetes) and the paper's six UCI sets.

Nothing here downloads: diabetes ships inside scikit-learn, and the UCI sets are read from a
directory (``../shared/data/uci`` in this project, or a user's ``--data-dir``) in the format of
Fernandez-Delgado et al. (2014): ``<name>/<name>_R.dat`` (tab-separated, header row, a row index,
standardised features, the 0-based class) and ``<name>/conxuntos.dat`` (train / test indices).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

UCI_SETS = (
    "acute-inflammation",
    "acute-nephritis",
    "balloons",
    "breast-tissue",
    "fertility",
    "pittsburg-bridges-SPAN",
)


class TrainTestSizes:
    """``n`` and ``d`` of a data set with ``X_train`` rows."""

    X_train: torch.Tensor

    @property
    def n(self) -> int:
        """Training rows."""
        return self.X_train.shape[0]

    @property
    def d(self) -> int:
        """Feature columns."""
        return self.X_train.shape[1]


@dataclass
class Dataset(TrainTestSizes):
    """A regression data set split into train and test (float32 tensors on the CPU)."""

    name: str
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor


def default_uci_dir() -> Optional[Path]:
    """``$LIGHTNING_CONVEX_UCI_DIR`` or the project's ``../shared/data/uci`` when present."""
    env = os.environ.get("LIGHTNING_CONVEX_UCI_DIR")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve().parent.parent
    candidates += [here.parent / "shared" / "data" / "uci", Path.cwd().parent / "shared" / "data" / "uci"]
    for path in candidates:
        if path.is_dir():
            return path
    return None


def load_uci(name: str, data_dir=None, split: str = "conxuntos") -> Dataset:
    """One of the paper's UCI sets, regression on the class label.

    ``split="conxuntos"`` uses the train/test indices of ``conxuntos.dat``; ``split="all"`` puts
    every row in the training set (the test set is then empty).
    """
    root = Path(data_dir) if data_dir is not None else default_uci_dir()
    if root is None or not (root / name).is_dir():
        raise FileNotFoundError(
            f"UCI data set {name!r} not found under {root}; pass data_dir (or --data-dir) pointing "
            f"at a folder with one sub-folder per set ({', '.join(UCI_SETS)})"
        )
    folder = root / name
    path = folder / f"{name}_R.dat"
    if not path.is_file():
        raise FileNotFoundError(f"missing data file {path}")
    table = np.loadtxt(path, skiprows=1, dtype=np.float64)
    X = table[:, 1:-1]
    y = table[:, -1]
    if split == "all":
        train, test = np.arange(len(y)), np.arange(0)
    elif split == "conxuntos":
        lines = (folder / "conxuntos.dat").read_text().strip().splitlines()
        train = np.array(lines[0].split(), dtype=int)
        test = np.array(lines[1].split(), dtype=int)
    else:
        raise ValueError(f"split must be 'conxuntos' or 'all', got {split!r}")
    as_t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return Dataset(name, as_t(X[train]), as_t(y[train]), as_t(X[test]), as_t(y[test]))


def load_diabetes(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's diabetes set (n = 442, d = 10), features and target standardised."""
    from sklearn.datasets import load_diabetes as sk_diabetes

    X, y = sk_diabetes(return_X_y=True)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    test, train = order[:n_test], order[n_test:]
    mean, std = X[train].mean(0), X[train].std(0)
    X = (X - mean) / std
    y = (y - y[train].mean()) / y[train].std()
    as_t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return Dataset("diabetes", as_t(X[train]), as_t(y[train]), as_t(X[test]), as_t(y[test]))
