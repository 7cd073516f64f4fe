"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) from local IDX files, for the paper's Figure 5.

Nothing here downloads. The files are read from ``data_dir``, else ``$LIGHTNING_CONVEX_FASHION_MNIST_DIR``,
else ``/usr/share/datasets/fashion-mnist`` (Debian/Ubuntu package ``dataset-fashion-mnist``:
``apt-get install dataset-fashion-mnist``). Each of the four files may be gzip-compressed
(``train-images-idx3-ubyte.gz``) or raw (``train-images-idx3-ubyte``).

Ten classes with the scalar networks of this library: one-vs-rest squared loss. Class c gets its
own :class:`~lightning_convex.ParallelReLU` f_c trained on the targets y_c = 1[label = c] (one-hot
column c; :meth:`FashionMNIST.targets`), and the prediction is argmax_c f_c(x). The ten-output
objective is the sum

    J(theta_1..theta_10) = sum_c [ 1/2 ||f_c(X) - y_c||^2 + beta R(theta_c) ],

whose terms share no parameters, so its convex equivalent is the ten restricted programs of
MATH.md section 3, one per class (each over its own pattern set S_c), solved independently; a
certified gap of the sum is the sum of the ten gaps, relative to S_1, ..., S_10.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .data import TrainTestSizes

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_VAR = "LIGHTNING_CONVEX_FASHION_MNIST_DIR"
PACKAGE = "dataset-fashion-mnist"
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot")
SCALINGS = ("standardize", "unit", "none")

# IDX type codes (the third byte of the magic number)
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path) -> np.ndarray:
    """One IDX file (gzip or raw, detected from the content) as a numpy array.

    Format (LeCun's MNIST page): magic = 0x00 0x00 <type> <ndim>, then ndim big-endian uint32
    sizes, then the data in C order.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4]!r})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    count = int(np.prod(shape)) if shape else 1
    if len(raw) - header != count * dtype.itemsize:
        raise ValueError(f"{path}: header says shape {shape} ({count * dtype.itemsize} bytes of data), "
                         f"file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def default_dir() -> Path:
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else DEFAULT_DIR


def _find(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(
        f"Fashion-MNIST file {stem}[.gz] not found in {root}. Install the Debian/Ubuntu package "
        f"'{PACKAGE}' (apt-get install {PACKAGE}; files go to {DEFAULT_DIR}), or pass data_dir / set "
        f"${ENV_VAR} to a folder holding the four IDX files. Nothing is downloaded."
    )


def available(data_dir=None) -> bool:
    """Whether all four files are present (tests skip on False)."""
    root = Path(data_dir) if data_dir is not None else default_dir()
    try:
        for images, labels in FILES.values():
            _find(root, images)
            _find(root, labels)
    except FileNotFoundError:
        return False
    return True


@dataclass
class FashionMNIST(TrainTestSizes):
    """Images as (n, 784) float32 rows, labels as int64 class indices, on the CPU."""

    X_train: torch.Tensor
    labels_train: torch.Tensor
    X_test: torch.Tensor
    labels_test: torch.Tensor
    scaling: str = "standardize"

    num_classes = len(CLASSES)

    def targets(self, c: Optional[int] = None, split: str = "train") -> torch.Tensor:
        """One-vs-rest targets: y_c = 1[label = c] (n,), or all ten as one-hot columns (n, 10)."""
        labels = {"train": self.labels_train, "test": self.labels_test}.get(split)
        if labels is None:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        onehot = torch.nn.functional.one_hot(labels, self.num_classes).to(torch.float32)
        if c is None:
            return onehot
        if not isinstance(c, int) or not 0 <= c < self.num_classes:
            raise ValueError(f"class index must be an integer in [0, {self.num_classes}), got {c!r}")
        return onehot[:, c]

    def subsample(self, n_train: int, n_test: Optional[int] = None, seed: int = 0) -> "FashionMNIST":
        """A class-stratified random subset (the same scaling; statistics are not recomputed)."""
        gen = np.random.default_rng(seed)

        def pick(labels: torch.Tensor, count: int) -> torch.Tensor:
            total = labels.shape[0]
            if not isinstance(count, int) or count < 1 or count > total:
                raise ValueError(f"subsample size must be an integer in [1, {total}], got {count!r}")
            lab = labels.numpy()
            # round-robin over shuffled per-class lists keeps the class balance of the full set
            per_class = [gen.permutation(np.flatnonzero(lab == c)) for c in range(self.num_classes)]
            order = np.concatenate([np.stack([p[i] for p in per_class if i < len(p)])
                                    for i in range(max(map(len, per_class)))])
            return torch.as_tensor(np.sort(order[:count]))

        tr = pick(self.labels_train, n_train)
        te = pick(self.labels_test, n_test if n_test is not None else self.labels_test.shape[0])
        return FashionMNIST(self.X_train[tr], self.labels_train[tr], self.X_test[te], self.labels_test[te],
                            self.scaling)


def load_fashion_mnist(data_dir=None, scaling: str = "standardize") -> FashionMNIST:
    """The 60000 training and 10000 test images (784 pixels) with their labels.

    ``scaling``: ``"standardize"`` (default): pixel / 255, then each pixel centred and scaled by
    its training-set mean and standard deviation (constant pixels get std 1); first-order
    solvers need it, since raw pixels are all positive and make X^T X badly conditioned.
    ``"unit"``: pixel / 255 in [0, 1]. ``"none"``: raw 0-255 values as floats.
    """
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
    root = Path(data_dir) if data_dir is not None else default_dir()
    if not root.is_dir():
        raise FileNotFoundError(
            f"Fashion-MNIST folder {root} does not exist. Install the Debian/Ubuntu package "
            f"'{PACKAGE}' (apt-get install {PACKAGE}), or pass data_dir / set ${ENV_VAR}. "
            "Nothing is downloaded."
        )
    parts = {}
    for split, (images, labels) in FILES.items():
        X = read_idx(_find(root, images))
        lab = read_idx(_find(root, labels))
        if X.ndim != 3 or lab.ndim != 1 or X.shape[0] != lab.shape[0]:
            raise ValueError(f"{split}: images {X.shape} and labels {lab.shape} do not match")
        if lab.size and (lab.min() < 0 or lab.max() >= len(CLASSES)):
            raise ValueError(f"{split}: labels outside 0..{len(CLASSES) - 1}")
        parts[split] = (X.reshape(X.shape[0], -1), lab.astype(np.int64))
    (Xtr, ytr), (Xte, yte) = parts["train"], parts["test"]
    if Xtr.shape[1] != Xte.shape[1]:
        raise ValueError(f"train images have {Xtr.shape[1]} pixels, test images {Xte.shape[1]}")
    # float32 rows (what the networks use); the statistics accumulate in float64
    Xtr, Xte = Xtr.astype(np.float32), Xte.astype(np.float32)
    if scaling in ("unit", "standardize"):
        Xtr /= 255.0
        Xte /= 255.0
    if scaling == "standardize":
        mean = Xtr.mean(axis=0, dtype=np.float64)
        std = np.sqrt(np.maximum((Xtr.astype(np.float64) ** 2).mean(axis=0) - mean ** 2, 0.0))
        std[std < 1e-6] = 1.0
        for X in (Xtr, Xte):
            X -= mean.astype(np.float32)
            X /= std.astype(np.float32)
    return FashionMNIST(torch.from_numpy(Xtr), torch.as_tensor(ytr), torch.from_numpy(Xte),
                        torch.as_tensor(yte), scaling)
