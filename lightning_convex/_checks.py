"""Input validation shared by every public entry point.

Each check raises ``ValueError`` (or ``TypeError``) with a message that names the argument and
what is wrong with it, so that bad input never reaches a solver or a network.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

REGULARIZATIONS = ("path", "paper")
DEPTHS = (2, 3)


def check_float_dtype(dtype, name: str = "dtype") -> torch.dtype:
    """A floating torch dtype (float32 / float64); integer working dtypes would truncate data."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"{name} must be a floating torch dtype (torch.float32 or torch.float64), got {dtype!r}")
    return dtype


def _as_float(t, name: str, device, dtype) -> torch.Tensor:
    """A floating tensor: integer and bool input go straight to float64 (through float32 they
    would lose digits above 2^24), then to ``dtype`` when given."""
    try:
        t = torch.as_tensor(t, device=device)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"{name} must be a numeric tensor or array, got {type(t).__name__}: {exc}") from None
    if dtype is not None:
        check_float_dtype(dtype)
    if not torch.is_floating_point(t):
        if t.is_complex():
            raise ValueError(f"{name} must be real, got {t.dtype}")
        t = t.to(torch.float64)
    if dtype is not None:
        t = t.to(dtype)
    return t


def as_matrix(X, name: str = "X", device=None, dtype=None) -> torch.Tensor:
    """``X`` as a 2-D floating tensor, checked for shape and finiteness."""
    X = _as_float(X, name, device, dtype)
    if X.dim() != 2:
        raise ValueError(f"{name} must be a 2-D (n, d) tensor, got shape {tuple(X.shape)}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} must be non-empty, got shape {tuple(X.shape)}")
    if not bool(torch.isfinite(X).all()):
        raise ValueError(f"{name} contains NaN or inf entries")
    return X


def as_targets(y, n: int, name: str = "y", device=None, dtype=None) -> torch.Tensor:
    """``y`` as a 1-D floating tensor of length ``n`` (an (n, 1) column is accepted)."""
    y = _as_float(y, name, device, dtype)
    if y.dim() == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.dim() != 1:
        raise ValueError(
            f"{name} must be a 1-D tensor of n scalar targets, got shape {tuple(y.shape)}; "
            "for several outputs fit one network per output"
        )
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} entries but X has {n} rows")
    if not bool(torch.isfinite(y).all()):
        raise ValueError(f"{name} contains NaN or inf entries")
    return y


def check_beta(beta) -> float:
    """``beta`` as a positive finite float."""
    try:
        value = float(beta)
    except (TypeError, ValueError):
        raise TypeError(f"beta must be a positive number, got {beta!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"beta must be a positive finite number, got {beta!r}")
    return value


def check_int(name: str, value, minimum: int = 0, optional: bool = False) -> Optional[int]:
    """``value`` as an int >= ``minimum`` (``None`` passes when ``optional``); bools are refused."""
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        what = "a non-negative integer" if minimum == 0 else f"an integer >= {minimum}"
        if optional:
            what = f"None or {what}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return value


def check_number(name: str, value, low: float = 0.0, high: float = math.inf, *,
                 low_open: bool = True, high_open: bool = True, allow_inf: bool = False) -> float:
    """``value`` as a float in the interval from ``low`` to ``high`` (open ends by default).

    Bools and NaN are refused; ``allow_inf`` admits +inf as the upper end (an unset limit).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not (allow_inf and value > 0)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    below = value <= low if low_open else value < low
    above = value >= high if high_open and not math.isinf(value) else value > high
    if below or above:
        left, right = ("(" if low_open else "["), (")" if high_open else "]")
        raise ValueError(f"{name} must lie in {left}{low:g}, {high:g}{right}, got {value!r}")
    return value


def check_architecture(depth, hidden) -> None:
    """A depth of 2 or 3, and one neuron per branch at depth 2."""
    if depth not in DEPTHS:
        raise ValueError(f"depth must be 2 or 3, got {depth!r}")
    if depth == 2 and hidden != 1:
        raise ValueError(
            f"depth=2 has one neuron per branch (f = sum_k w3_k relu(X u_k)); pass hidden=1 "
            f"and branches=K for K neurons, got hidden={hidden}"
        )


def check_regularization(regularization: str) -> str:
    if regularization not in REGULARIZATIONS:
        raise ValueError(
            f"unsupported regularization {regularization!r}: use 'path' (path norm) or 'paper' "
            "(eq. 4: squared norms of the last two layers with ||W1_k||_F <= 1). Plain weight "
            "decay on all layers is not equivalent to the convex program."
        )
    return regularization
