"""Lightning callbacks. Each works with ``pytorch_lightning`` and ``lightning.pytorch`` Trainers."""

__all__: list = []
