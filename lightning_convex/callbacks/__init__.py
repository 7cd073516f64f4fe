"""Lightning callbacks. Each works with ``pytorch_lightning`` and ``lightning.pytorch`` Trainers."""

from .active_set_warm_start import ActiveSetWarmStart

__all__: list = ["ActiveSetWarmStart"]
