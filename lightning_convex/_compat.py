"""Serving both Lightning import styles: ``pytorch_lightning`` and ``lightning.pytorch``.

A Trainer of one style calls the hooks of a callback of the other (duck typing), but its
``isinstance`` checks on LightningModules fail across styles. So the library's callbacks are
single classes that never ``isinstance``-check the trainer, strategy or module, and a
LightningModule is built once per style from one definition (:func:`namespace`).
"""

from __future__ import annotations

import importlib
from types import ModuleType

NAMESPACES = ("pytorch_lightning", "lightning.pytorch")


def namespace(name: str = "pytorch_lightning") -> ModuleType:
    """The Lightning package for an import style (``"pytorch_lightning"`` or ``"lightning.pytorch"``)."""
    if name in ("lightning", "L"):
        name = "lightning.pytorch"
    if name not in NAMESPACES:
        raise ValueError(f"unknown Lightning import style {name!r}; use one of {NAMESPACES}")
    try:
        return importlib.import_module(name)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        package = "lightning" if name == "lightning.pytorch" else "pytorch-lightning"
        raise ImportError(f"{name} is not installed: pip install {package}") from exc


def available_namespaces() -> list:
    """The import styles installed here."""
    found = []
    for name in NAMESPACES:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        found.append(name)
    return found


def style_of(obj) -> str:
    """The import style an object (trainer, module) comes from, by its class's module path."""
    for klass in type(obj).__mro__:
        module = klass.__module__ or ""
        if module.startswith("lightning.pytorch") or module.startswith("lightning.fabric"):
            return "lightning.pytorch"
        if module.startswith("pytorch_lightning") or module.startswith("lightning_fabric"):
            return "pytorch_lightning"
    return "pytorch_lightning"
