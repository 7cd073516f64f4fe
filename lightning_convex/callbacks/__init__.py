"""Lightning callbacks. Each works with ``pytorch_lightning`` and ``lightning.pytorch`` Trainers."""

from .convex_certificate import ConvexCertificate

__all__: list = ["ConvexCertificate"]
