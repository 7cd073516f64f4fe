"""Recording certificates over wall time, and writing CSV files and plots."""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Dict, Iterable, List

from ..callbacks import ConvexCertificate


class RecordingCertificate(ConvexCertificate):
    """A :class:`ConvexCertificate` that also keeps every certificate with the wall time since
    the fit started (certificate time included), for tables and plots."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.records: List[Dict[str, float]] = []
        self._t0 = None

    def on_train_start(self, trainer, pl_module) -> None:
        """Start the clock, then do what the base class does."""
        self._t0 = time.perf_counter()
        super().on_train_start(trainer, pl_module)

    def on_certificate(self, trainer, pl_module, certificate, on_step: bool) -> None:
        """Log as the base class does and keep a plain-value record."""
        super().on_certificate(trainer, pl_module, certificate, on_step)
        self.records.append({
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "seconds": time.perf_counter() - (self._t0 or time.perf_counter()),
            "objective": certificate.primal,
            "lower_bound": certificate.lower_bound,
            "gap": certificate.gap,
            "relative_gap": certificate.relative_gap,
        })


class CsvRows:
    """A CSV file written row by row: the header at construction (so an unwritable path fails
    before any work), each row flushed as it comes, so a run that fails late keeps every
    finished row."""

    def __init__(self, path, columns: List[str]) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("w", newline="")
        except OSError as exc:
            raise OSError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        self._writer = csv.DictWriter(self._file, fieldnames=columns, extrasaction="ignore")
        self._writer.writeheader()
        self._file.flush()

    def append(self, row: dict) -> None:
        self._writer.writerow(row)
        self._file.flush()

    def close(self) -> Path:
        self._file.close()
        return self.path


def write_csv(path, rows: Iterable[dict], columns: List[str]) -> Path:
    out = CsvRows(path, columns)
    for row in rows:
        out.append(row)
    return out.close()


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
