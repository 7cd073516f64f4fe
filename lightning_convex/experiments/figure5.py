"""``lightning-convex reproduce figure5``: accuracy against wall time on Fashion-MNIST (the
paper's Figure 5): Adam on the non-convex network, Adam on the convex program, and hybrid training.

Paper setting (Ergen & Pilanci, ICML 2021, Figure 5): the ten-class Fashion-MNIST training set
(n = 60000, d = 784), K = 40 branches of width m = 100, beta = 1e-3, batches of 1000; training and
test accuracy against wall time, for the non-convex network and for the convex program, each
trained by a first-order method on mini-batches. That size is ``--n 60000 --K 40 --m 100
--beta 1e-3 --batch-size 1000`` and wants a GPU; the defaults (:class:`Settings`) are a
class-stratified subsample sized to finish on a 2-core CPU (README, "Figure 5").

Ten classes as ten one-vs-rest problems (:mod:`lightning_convex.fashion_mnist`): class c has targets
y_c = 1[label = c] and its own model f_c; the prediction is argmax_c f_c(x). The objective is
J = sum_c J_c with J_c in the paper's sum form, 1/2 ||f_c(X) - y_c||^2 + beta R_c (MATH.md section
1). Every (method, class) pair is one Lightning fit with the same Trainer settings, torch.optim.Adam,
the same batches (a seeded shuffle per class) and ``epochs`` epochs:

- ``sgd``: a :class:`~lightning_convex.ParallelReLU` per class (depth 3, K branches of width m, a
  bias column, path norm) trained through :class:`~lightning_convex.ParallelReLURegressor`
  (learning rate ``lr``).
- ``convex``: the restricted convex program of MATH.md section 3 for each class over ``patterns``
  (default K) patterns sampled per Remark 3, trained by Adam (``convex_lr``) on mini-batches
  (:class:`ConvexProgramRegressor`). A pattern is kept as the Gaussian weights that generate it
  (U_p (d' x m), w2_p, w3_p, from :func:`~lightning_convex.patterns.draw_branches`), and its masks
  on ANY rows are read from them (:func:`~lightning_convex.patterns.read_branches`: D1_pj(x) =
  1[x . u_pj >= 0], D2_p(x) = 1[relu(x U_p) w2_p >= 0], signs from w2_p and w3_p). So the model is
  f_c(x) = sum_p D2_p(x) sum_j D1_pj(x) x . q_pj on training and test rows alike, and where the
  cone constraints hold it equals the ReLU network of Proposition 1 on those rows. The cone
  constraints G Q >= 0 are not projected onto: as in the authors' code they enter the loss as a
  hinge penalty rho * sum relu(-(G Q)_row) over the batch's cone rows (both blocks of MATH.md
  section 3; exact once rho exceeds the optimal multipliers, which the authors' rho = 1e-2 need
  not). ``objective`` is the program's objective 1/2 ||A Q - y||^2 + beta sum ||q_pj|| on the
  training rows (J of the Proposition-1 network when Q is feasible), and ``cone_violation`` the
  largest violated cone row on the training rows, in output units (the targets are 0 and 1).
- ``hybrid``: ``sgd`` plus :class:`~lightning_convex.callbacks.ActiveSetWarmStart` every
  ``warm_every`` epochs and after the last one, with an explicit budget
  (:func:`warm_start_callback`). It starts from the same networks and batches as ``sgd``, so the
  two runs agree until the first warm start, which never raises J.

Time axis: each fit's training wall time (warm starts included) to the end of each epoch, without
the per-epoch evaluation (accuracies, J and the violation on all rows). The ten classes' fits run
one after another, so a method's ``seconds`` at epoch e is the sum of its ten fits' times to epoch
e: what training all ten models to epoch e cost. ``curves.csv`` gets one row per (method, class,
epoch) as each epoch finishes (``class`` = c: J_c, and the accuracies of the one-vs-rest decision
f_c(x) >= 1/2) and, once a method's ten fits are done, one row per epoch with ``class`` = ``all``
(ten-way argmax accuracies, J = sum_c J_c, the worst violation). The plot draws the ``all`` rows.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from .. import ParallelReLU, ParallelReLURegressor, RestrictedProgram, Rows, objective
from ..callbacks import ActiveSetWarmStart
from ..fashion_mnist import load_fashion_mnist
from ..patterns import draw_branches, read_branches
from ..rows import ROW_CHUNK
from .demo import _quiet_lightning
from .recording import CsvRows, pyplot

METHODS = ("sgd", "convex", "hybrid")
COLUMNS = ["method", "class", "epoch", "seconds", "train_accuracy", "test_accuracy", "objective",
           "cone_violation"]


@dataclass(frozen=True)
class Settings:
    """One run's sizes, optimizers and budgets (the CLI's options). The defaults are the CPU run
    of README "Figure 5"; ``n``, ``K``, ``m``, ``beta``, ``batch_size`` as the paper: 60000, 40,
    100, 1e-3, 1000."""

    n: int = 10000
    n_test: int = 10000
    K: int = 10
    m: int = 10
    patterns: Optional[int] = None  # sampled patterns per class for "convex"; None: K
    beta: float = 1e-3
    epochs: int = 20
    batch_size: int = 250
    lr: float = 1e-3
    convex_lr: float = 3e-5
    rho: float = 1e-2
    warm_every: int = 5
    warm_time: float = 3.0
    warm_rounds: int = 2
    seed: int = 0
    device: str = "cpu"
    threads: int = 1


def warm_start_callback(settings: Settings) -> ActiveSetWarmStart:
    """The hybrid's convex step with its budget explicit: the scale engine (``solver="engine"``),
    at most ``warm_rounds`` active-set rounds and ``warm_rounds * warm_time`` seconds per warm
    start for all its rounds together (the callback's ``time_limit``), no sampled or searched
    patterns. When the budget runs out, :func:`~lightning_convex.active_set_solve` writes back the
    best iterate it holds only if it lowers J, so the hybrid is never above its own SGD iterate;
    a warm start that finds nothing better costs its budget and leaves the network as it was."""
    return ActiveSetWarmStart(every_n_epochs=settings.warm_every, solver="engine",
                              time_limit=settings.warm_rounds * settings.warm_time,
                              max_rounds=settings.warm_rounds, beta=settings.beta, verbose=False)


# -- the convex model ---------------------------------------------------------------------------
class _PenalizedFit(torch.autograd.Function):
    """1/2 ||A Q - y||^2 + rho * sum relu(-G Q) over a program's rows, differentiated through the
    program's own adjoint: the gradient is A^T (A Q - y) + G^T mu with mu = -rho 1[G Q < 0] (one
    forward and one adjoint pass; the operators of MATH.md section 3 live in RestrictedProgram)."""

    @staticmethod
    def forward(ctx, Q, program: RestrictedProgram, rho: float):
        pred, R1, R2 = program.forward(Q.detach())
        residual = pred - program.y
        value = 0.5 * residual.square().sum() + rho * torch.relu(-R1).sum()
        mu = [(R1 < 0).to(Q.dtype) * -rho]
        if R2 is not None:
            value = value + rho * torch.relu(-R2).sum()
            mu.append((R2 < 0).to(Q.dtype) * -rho)
        ctx.program = program
        ctx.save_for_backward(residual, *mu)
        return value

    @staticmethod
    def backward(ctx, grad):
        residual, mu1, *mu2 = ctx.saved_tensors
        step = ctx.program.adjoint(v=residual, mu1=mu1, mu2=mu2[0] if mu2 else None)
        return grad * step, None, None


class SampledConvexModel(torch.nn.Module):
    """One class's restricted convex program over ``patterns`` sampled patterns, as a model.

    Buffers ``U`` (P, d', m), ``w2`` (P, m), ``w3`` (P,): the Gaussian weights generating the
    patterns (Remark 3), from which the masks of any rows are read; parameter ``Q`` (P, m, d'),
    the convex variable, starting at 0 (a feasible point).
    """

    def __init__(self, in_features: int, hidden: int, patterns: int, generator: torch.Generator,
                 bias: bool = True) -> None:
        super().__init__()
        self.bias = bool(bias)
        dim = in_features + int(self.bias)
        U, w2, w3 = draw_branches(patterns, dim, hidden, 3, generator, "cpu", dtype=torch.float32)
        self.register_buffer("U", U)
        self.register_buffer("w2", w2)
        self.register_buffer("w3", w3)
        self.Q = torch.nn.Parameter(torch.zeros(patterns, hidden, dim))

    def program(self, X: torch.Tensor, y: torch.Tensor, beta: float) -> RestrictedProgram:
        """The program on rows (X, y), with the sampled patterns' masks on those rows, in Q's
        dtype and on its device."""
        rows = Rows.prepare(X, y, bias=self.bias, device=self.Q.device, dtype=self.Q.dtype)
        patterns = read_branches(rows.features, self.U, self.w2, self.w3, self.bias)
        return RestrictedProgram(rows, None, patterns, beta, dtype=self.Q.dtype)

    @torch.no_grad()
    def outputs(self, X: torch.Tensor) -> torch.Tensor:
        """A Q on the rows X, in row chunks."""
        zeros = torch.zeros(X.shape[0], dtype=X.dtype, device=X.device)  # programs carry targets
        return torch.cat([self.program(X[i:i + ROW_CHUNK], zeros[i:i + ROW_CHUNK], 1.0).predict(self.Q)
                          for i in range(0, X.shape[0], ROW_CHUNK)])

    @torch.no_grad()
    def measure(self, X: torch.Tensor, y: torch.Tensor, beta: float):
        """(A Q, the objective 1/2 ||A Q - y||^2 + beta sum ||q_pj|| in float64, the largest cone
        violation max(0, -min G Q)) on the rows (X, y), in row chunks."""
        outputs, worst = [], 0.0
        for i in range(0, X.shape[0], ROW_CHUNK):
            pred, R1, R2 = self.program(X[i:i + ROW_CHUNK], y[i:i + ROW_CHUNK], beta).forward(self.Q)
            outputs.append(pred)
            worst = max(worst, float(-R1.min()), float(-R2.min()) if R2 is not None else 0.0)
        f = torch.cat(outputs)
        J = 0.5 * float((f.double() - y.double()).square().sum()) + beta * float(self.Q.double().norm(dim=2).sum())
        return f, J, worst


class ConvexProgramRegressor(pl.LightningModule):
    """Adam on a :class:`SampledConvexModel`. A batch's loss is its share of the penalised sum-form
    objective, 1/2 ||A_b Q - y_b||^2 + rho sum_b relu(-G_b Q) + beta sum ||q_pj|| |b| / n, so one
    epoch's losses add up to J + rho * (total violation), as
    :class:`~lightning_convex.ParallelReLURegressor`'s add up to J."""

    def __init__(self, model: SampledConvexModel, beta: float, rho: float, lr: float, n_train: int) -> None:
        super().__init__()
        self.model = model
        self.beta, self.rho, self.lr, self.n_train = float(beta), float(rho), float(lr), int(n_train)

    def training_step(self, batch, batch_idx):
        X, y = batch
        Q = self.model.Q
        share = X.shape[0] / self.n_train
        return _PenalizedFit.apply(Q, self.model.program(X, y, self.beta), self.rho) \
            + self.beta * share * Q.norm(dim=2).sum()

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.lr)


class NetworkMeasures:
    """What :class:`EpochRecorder` reads from a ParallelReLU (the interface of
    :class:`SampledConvexModel`): outputs f(X); (f(X), J in float64, no violation)."""

    def __init__(self, net: ParallelReLU) -> None:
        self.net = net

    @torch.no_grad()
    def outputs(self, X: torch.Tensor) -> torch.Tensor:
        return self.net(X)

    @torch.no_grad()
    def measure(self, X: torch.Tensor, y: torch.Tensor, beta: float):
        return self.net(X), objective(self.net, X, y, beta), 0.0


# -- one fit per (method, class), recorded per epoch --------------------------------------------
class EpochRecorder(pl.Callback):
    """Records one fit at its start (epoch 0) and after every epoch: training seconds so far (its
    own evaluation excluded), the outputs on the training and test rows, J and the cone
    violation. ``model`` has ``outputs(X)`` and ``measure(X, y, beta)``; ``sink`` gets each record."""

    def __init__(self, model, beta: float, train, X_test: torch.Tensor, sink: Callable[[dict], None]) -> None:
        self.model, self.beta, self.sink = model, beta, sink
        self._data = (*train, X_test)
        self.records: List[dict] = []
        self._start = self._excluded = 0.0

    def _record(self, epoch: int) -> None:
        seconds = time.perf_counter() - self._start - self._excluded
        begin = time.perf_counter()
        X, y, X_test = self._data
        out_train, J, violation = self.model.measure(X, y, self.beta)
        record = {"epoch": epoch, "seconds": seconds, "objective": float(J),
                  "cone_violation": float(violation), "out_train": out_train.float().cpu(),
                  "out_test": self.model.outputs(X_test).float().cpu()}
        self.records.append(record)
        self.sink(record)
        self._excluded += time.perf_counter() - begin

    def on_train_start(self, trainer, pl_module) -> None:
        """Called when training begins: moves the rows to the module's device once, starts the
        clock and records the starting point (epoch 0)."""
        self._data = tuple(t.to(pl_module.device) for t in self._data)
        self._start, self._excluded = time.perf_counter(), 0.0
        self._record(0)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        """Called when a training epoch ends, after the warm start's hook (which comes first in
        the callbacks list): records epoch ``current_epoch + 1``."""
        self._record(int(trainer.current_epoch) + 1)


def fit_class(method: str, c: int, data, initial: ParallelReLU, settings: Settings,
              sink: Callable[[dict], None]):
    """Fit class c's model by ``method``; returns (records per epoch, the warm starts' history)."""
    X, y = data.X_train, data.targets(c)
    seed = settings.seed * 1000 + c
    if method == "convex":
        model = SampledConvexModel(data.d, settings.m, settings.patterns or settings.K,
                                   torch.Generator().manual_seed(seed))
        module = ConvexProgramRegressor(model, settings.beta, settings.rho, settings.convex_lr, data.n)
    else:
        net = copy.deepcopy(initial)
        model = NetworkMeasures(net)
        module = ParallelReLURegressor(net, settings.beta, lr=settings.lr, n_train=data.n)
    warm = [warm_start_callback(settings)] if method == "hybrid" else []
    recorder = EpochRecorder(model, settings.beta, (X, y), data.X_test, sink)
    loader = DataLoader(TensorDataset(X, y), batch_size=settings.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    trainer = pl.Trainer(max_epochs=settings.epochs, callbacks=warm + [recorder], logger=False,
                         enable_checkpointing=False, enable_model_summary=False,
                         enable_progress_bar=False, accelerator=settings.device, devices=1)
    with warnings.catch_warnings():
        # a warm start that leaves the network as it was warns; its history is summarised instead
        warnings.filterwarnings("ignore", message="ActiveSetWarmStart")
        trainer.fit(module, loader)
    return recorder.records, (warm[0].history if warm else [])


def initial_networks(data, settings: Settings) -> List[ParallelReLU]:
    """The ten starting networks (a seed per class), shared by ``sgd`` and ``hybrid``."""
    nets = []
    for c in range(data.num_classes):
        torch.manual_seed(settings.seed * 1000 + c)
        nets.append(ParallelReLU(data.d, settings.m, settings.K, bias=True))
    return nets


def accuracy(outputs: torch.Tensor, labels: torch.Tensor) -> float:
    """Ten-way accuracy: argmax over the classes' outputs (C, n) against the labels."""
    return float((outputs.argmax(dim=0) == labels).double().mean())


def combine(method: str, per_class: Sequence[List[dict]], data) -> List[dict]:
    """A method's ``all`` rows: seconds and J summed over the classes, the worst violation, the
    ten-way accuracies."""
    rows = []
    for epoch in range(len(per_class[0])):
        at = [records[epoch] for records in per_class]
        rows.append({
            "method": method, "class": "all", "epoch": epoch,
            "seconds": sum(r["seconds"] for r in at),
            "train_accuracy": accuracy(torch.stack([r["out_train"] for r in at]), data.labels_train),
            "test_accuracy": accuracy(torch.stack([r["out_test"] for r in at]), data.labels_test),
            "objective": sum(r["objective"] for r in at),
            "cone_violation": max(r["cone_violation"] for r in at),
        })
    return rows


def class_row(method: str, c: int, record: dict, data) -> dict:
    """A per-class row: J_c, and the accuracies of the one-vs-rest decision f_c(x) >= 1/2."""
    def binary(outputs, labels):
        return float(((outputs >= 0.5) == (labels == c)).double().mean())
    return {"method": method, "class": c, "epoch": record["epoch"], "seconds": record["seconds"],
            "train_accuracy": binary(record["out_train"], data.labels_train),
            "test_accuracy": binary(record["out_test"], data.labels_test),
            "objective": record["objective"], "cone_violation": record["cone_violation"]}


# -- output ---------------------------------------------------------------------------------------
LABELS = {"sgd": "Adam on the network", "convex": "Adam on the convex program",
          "hybrid": "Adam + ActiveSetWarmStart"}
COLORS = {"sgd": "tab:blue", "convex": "tab:green", "hybrid": "tab:orange"}


def plot(rows: List[dict], settings: Settings, path: Path) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = (("train_accuracy", "training accuracy"), ("test_accuracy", "test accuracy"),
              ("objective", "J = sum_c 1/2||f_c(X)-y_c||^2 + beta R_c"))
    for method in METHODS:
        curve = [r for r in rows if r["method"] == method and r["class"] == "all"]
        for ax, (key, _) in zip(axes, panels):
            if curve:
                ax.plot([r["seconds"] for r in curve], [r[key] for r in curve], "-o", ms=3,
                        color=COLORS[method], label=LABELS[method])
    for ax, (key, title) in zip(axes, panels):
        ax.set_xlabel("wall time (s), ten one-vs-rest fits")
        ax.set_title(title)
        trained = [r[key] for r in rows if r["class"] == "all" and r["epoch"] > 0]
        if key != "objective" and trained:
            # the untrained start (about 0.1) stays off the axis, so the curves get the room
            ax.set_ylim(max(0.0, min(trained) - 0.02), min(1.0, max(trained) + 0.01))
    axes[2].set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Figure 5, Fashion-MNIST: n = {settings.n}, K = {settings.K}, m = {settings.m}, "
                 f"beta = {settings.beta:g}, batch {settings.batch_size}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _progress_line(method: str, c: int, record: dict) -> str:
    line = (f"{method:<6} class {c} epoch {record['epoch']:>3}: {record['seconds']:8.2f} s  "
            f"J_c = {record['objective']:.6g}")
    return line + (f"  violation {record['cone_violation']:.3g}" if method == "convex" else "")


def _warm_summary(c: int, history: List[dict]) -> str:
    changed = sum(h["changed"] for h in history)
    reasons = ", ".join(sorted({f"{h['stop_reason']}: {h['status']}" for h in history}))
    return (f"hybrid class {c}: {len(history)} warm starts ({reasons}), {changed} changed the network, "
            f"J lowered by {sum(h['before'] - h['after'] for h in history):.6g} in "
            f"{sum(h['seconds'] for h in history):.1f} s")


def main(out="figure5", data_dir=None, methods: Sequence[str] = METHODS, progress: bool = True,
         **options) -> int:
    """Run the methods, write ``curves.csv`` and ``figure5.png`` under ``out``; ``options`` are
    :class:`Settings` fields."""
    settings = Settings(**options)
    methods = list(dict.fromkeys(methods))
    if not methods or any(m not in METHODS for m in methods):
        raise ValueError(f"methods must be among {METHODS}, got {methods}")
    out = Path(out)
    curves = CsvRows(out / "curves.csv", COLUMNS)  # fails now, before any training, when unwritable
    _quiet_lightning()
    torch.set_num_threads(settings.threads)
    data = load_fashion_mnist(data_dir).subsample(settings.n, settings.n_test, seed=settings.seed)
    print(f"Figure 5, Fashion-MNIST as ten one-vs-rest models: n = {data.n}, {data.X_test.shape[0]} test "
          f"rows, d = {data.d} (+ bias), K = {settings.K}, m = {settings.m}, beta = {settings.beta:g}, "
          f"batch {settings.batch_size}, {settings.epochs} epochs; Adam lr {settings.lr:g} (network), "
          f"{settings.convex_lr:g} (convex: {settings.patterns or settings.K} sampled patterns, hinge "
          f"rho = {settings.rho:g}); hybrid: a warm start every {settings.warm_every} epochs and at the "
          f"end, <= {settings.warm_rounds} rounds in {settings.warm_rounds * settings.warm_time:g} s per class; J in the sum form",
          flush=True)
    initial = initial_networks(data, settings)
    rows: List[dict] = []
    for method in methods:
        per_class = []
        for c in range(data.num_classes):
            def sink(record, method=method, c=c):
                curves.append(class_row(method, c, record, data))
                if progress:
                    print(_progress_line(method, c, record), flush=True)
            records, history = fit_class(method, c, data, initial[c], settings, sink)
            per_class.append(records)
            if history:
                print(_warm_summary(c, history), flush=True)
        for row in combine(method, per_class, data):
            rows.append(row)
            curves.append(row)
        print(f"{method}: {rows[-1]['seconds']:.1f} s of training, J = {rows[-1]['objective']:.6g}, train "
              f"accuracy {rows[-1]['train_accuracy']:.4f}, test accuracy {rows[-1]['test_accuracy']:.4f}"
              + (f", cone violation {rows[-1]['cone_violation']:.3g}" if method == "convex" else ""),
              flush=True)
    path = curves.close()
    png = plot(rows, settings, out / "figure5.png")
    print(f"wrote {path} and {png}")
    return 0 if all(math.isfinite(r["objective"]) for r in rows) else 1
