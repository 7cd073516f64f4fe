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


ENV_VAR = "LIGHTNING_CONVEX_UCI_DIR"


def default_uci_dir() -> Optional[Path]:
    """``$LIGHTNING_CONVEX_UCI_DIR`` (which must then exist), else the project's
    ``../shared/data/uci`` when present."""
    env = os.environ.get(ENV_VAR)
    if env:
        if not Path(env).is_dir():
            raise FileNotFoundError(f"{ENV_VAR}={env!r} is set but is not a directory; point it at the "
                                    "folder holding the UCI sets, or unset it")
        return Path(env)
    here = Path(__file__).resolve().parent.parent
    for path in (here.parent / "shared" / "data" / "uci", Path.cwd().parent / "shared" / "data" / "uci"):
        if path.is_dir():
            return path
    return None


def _read_table(path: Path) -> np.ndarray:
    """The rows of a ``<name>_R.dat`` file: index, features, class; errors name the file."""
    try:
        table = np.loadtxt(path, skiprows=1, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise ValueError(f"{path}: not a table of numbers after the header row ({exc})") from None
    if table.shape[0] == 0 or table.shape[1] < 3:
        raise ValueError(f"{path}: expected rows of (index, features..., class), got shape {table.shape}")
    if not np.all(np.isfinite(table)):
        raise ValueError(f"{path}: contains NaN or inf entries")
    return table


def _read_split(path: Path, n: int):
    """(train, test) row indices from ``conxuntos.dat``; errors name the file."""
    if not path.is_file():
        raise FileNotFoundError(f"missing split file {path}")
    lines = path.read_text().strip().splitlines()
    if len(lines) < 2:
        raise ValueError(f"{path}: expected two lines (train indices, test indices), got {len(lines)}")
    try:
        train, test = (np.array(line.split(), dtype=int) for line in lines[:2])
    except ValueError as exc:
        raise ValueError(f"{path}: indices must be integers ({exc})") from None
    for kind, index in (("train", train), ("test", test)):
        if index.size and (index.min() < 0 or index.max() >= n):
            raise ValueError(f"{path}: {kind} indices must lie in [0, {n}), got {index.min()}..{index.max()}")
    return train, test


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
    if split not in ("conxuntos", "all"):
        raise ValueError(f"split must be 'conxuntos' or 'all', got {split!r}")
    table = _read_table(path)
    X = table[:, 1:-1]
    y = table[:, -1]
    if split == "all":
        train, test = np.arange(len(y)), np.arange(0)
    else:
        train, test = _read_split(folder / "conxuntos.dat", len(y))
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
