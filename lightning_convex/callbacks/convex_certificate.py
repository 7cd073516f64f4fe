r"""
Convex Certificate Callback
^^^^^^^^^^^^^^^^^^^^^^^^^^^

Logs a duality-gap certificate of the LightningModule's :class:`~lightning_convex.ParallelReLU`
during training (MATH.md section 5): the objective J(theta), a valid lower bound on the
restricted convex optimum over the network's own active set (plus sampled patterns), their gap,
and optionally the largest violation found by the descent-direction search (section 6).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch

from .._compat import available_namespaces, namespace
from ..certificates import Certificate, certify
from ..rows import RowSync
from ._common import check_no_weight_decay, find_beta, find_network, training_shard, world

try:  # rank-zero helpers shared by both import styles
    from lightning_utilities.core.rank_zero import rank_zero_info, rank_zero_warn
except ImportError:  # pragma: no cover - lightning_utilities ships with every Lightning
    rank_zero_info = rank_zero_warn = print

# One class serves both import styles: Trainers of either style call the hooks of a callback of
# the other (duck typing), so the base class only has to satisfy the Trainer's own isinstance
# check on its callbacks list, which accepts any ``Callback`` subclass of the style installed.
_Callback = namespace(available_namespaces()[0]).Callback


class _StrategySync(RowSync):
    """Row shards of a Trainer's processes: reductions through ``trainer.strategy``."""

    def __init__(self, trainer) -> None:
        self.trainer = trainer
        self.rank, self.size = world(trainer)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        # the strategy reduces in place: hand it a copy
        return self.trainer.strategy.reduce(tensor.clone(), reduce_op="sum")

    def max(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.trainer.strategy.reduce(tensor.clone(), reduce_op="max")

    def cat(self, tensor: torch.Tensor) -> torch.Tensor:
        strategy = self.trainer.strategy
        length = torch.tensor([tensor.shape[0]], device=tensor.device)
        lengths = strategy.all_gather(length).reshape(-1).tolist()
        width = max(lengths)
        padded = tensor.new_zeros((width,) + tuple(tensor.shape[1:]))
        padded[: tensor.shape[0]] = tensor
        gathered = strategy.all_gather(padded)  # (W, width, ...)
        return torch.cat([gathered[r, :count] for r, count in enumerate(lengths)])

    def row_ids(self, n_local: int, device) -> torch.Tensor:
        # training_shard gives rank r the rows r, r + W, r + 2W, ...
        return self.rank + self.size * torch.arange(n_local, device=device)

    @property
    def distributed(self) -> bool:
        return self.size > 1


class ConvexCertificate(_Callback):
    r"""Log a duality-gap certificate of the module's :class:`~lightning_convex.ParallelReLU`.

    Every ``every_n_epochs`` epochs (and/or every ``every_n_train_steps`` optimizer steps) the
    callback makes one pass over the full training set, computes
    :func:`lightning_convex.certify` against the network's own active set (plus
    ``extra_patterns`` sampled ones) and logs, through Lightning's logging (loggers and progress
    bar):

    - ``convex/primal``: J(theta) = 1/2 ||f(X) - y||^2 + beta R(theta) (the paper's sum form);
    - ``convex/lower_bound``: a valid lower bound on OPT(S), S the active set (+ sampled);
    - ``convex/gap`` and ``convex/relative_gap``: J(theta) - lower bound (absolute, / J);
    - ``convex/max_violation`` (with ``search > 0``): the largest r . f_theta'(X) / beta found
      over unit-path-norm branches theta'; above 1 the network is provably not globally optimal.

    The gap bounds J(theta) - OPT(S), not the distance to the global optimum: S is the scope.

    Under DDP every rank reads an unpadded shard of the rows (rank r: rows r, r + W, ...) and
    every sum is reduced through the Trainer's strategy, so the certificate equals the
    single-process one. Sanity checking is skipped. The module must hold exactly one
    ``ParallelReLU`` and a ``beta`` (attribute or hyperparameter, or pass ``beta=``); an
    optimizer applying weight decay to its first layer is refused (it changes the objective).

    You can customise when a certificate is computed by overriding :meth:`should_certify`, and
    what is done with it by overriding :meth:`on_certificate` (the default logs it).

    Example::

        from lightning_convex.callbacks import ConvexCertificate

        class EveryTenthEpoch(ConvexCertificate):
            def should_certify(self, step_idx=None, epoch_idx=None):
                return epoch_idx is not None and epoch_idx % 10 == 9

        trainer = Trainer(callbacks=[ConvexCertificate(search=64)], max_epochs=100)

    Args:
        every_n_epochs: certify after every n-th training epoch (``None`` or 0: never at epoch end).
        every_n_train_steps: certify after every n-th optimizer step (``None``: never).
        search: random starts of the descent-direction search (0: no search, no
            ``convex/max_violation``).
        data: the training set to certify on (an (X, y) pair of tensors, a Dataset or a
            DataLoader); ``None`` reads the Trainer's training dataloader's dataset.
        extra_patterns: random patterns added to the active set (scope "active set + N sampled").
        beta: the regularization weight; ``None`` reads ``pl_module.beta`` or its hparams.
        seed: seeds the sampled patterns and the search (the same on every rank).
        prog_bar: show the values in the progress bar.
        certify_kwargs: passed on to :func:`lightning_convex.certify` (``iterations``,
            ``support``, ``refine``, ``search_steps``, ...).
    """

    def __init__(
        self,
        every_n_epochs: Optional[int] = 1,
        every_n_train_steps: Optional[int] = None,
        search: int = 0,
        data: Any = None,
        extra_patterns: int = 0,
        beta: Optional[float] = None,
        seed: int = 0,
        prog_bar: bool = True,
        **certify_kwargs: Any,
    ) -> None:
        for name, value in (("every_n_epochs", every_n_epochs), ("every_n_train_steps", every_n_train_steps)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ValueError(f"{name} must be None or a non-negative integer, got {value!r}")
        for name, value in (("search", search), ("extra_patterns", extra_patterns)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        for key in ("patterns", "multipliers", "solution", "sync", "generator"):
            if key in certify_kwargs:
                raise ValueError(f"ConvexCertificate sets {key!r} itself; it cannot be passed")
        self.every_n_epochs = every_n_epochs or None
        self.every_n_train_steps = every_n_train_steps or None
        self.search = search
        self.data = data
        self.extra_patterns = extra_patterns
        self.beta = beta
        self.seed = int(seed)
        self.prog_bar = bool(prog_bar)
        self.certify_kwargs = certify_kwargs
        #: the most recent :class:`~lightning_convex.Certificate` (not saved in checkpoints)
        self.last_certificate: Optional[Certificate] = None
        self._last_metrics: dict = {}
        self._num_certificates = 0
        self._latest_step = 0
        self._latest_epoch = -1
        self._shard = None
        self._shard_key = None
        self._told = False

    @property
    def state_key(self) -> str:
        """Identifies this callback's state in checkpoints (several schedules can coexist)."""
        return self._generate_state_key(
            every_n_epochs=self.every_n_epochs, every_n_train_steps=self.every_n_train_steps
        )

    # -- policy ---------------------------------------------------------------------------------
    def should_certify(self, step_idx: Optional[int] = None, epoch_idx: Optional[int] = None) -> bool:
        """Called after every optimizer step and after every training epoch to decide whether to
        certify now.

        One of the arguments is set to the zero-based index of the last optimizer step or
        epoch. The default certifies after every ``every_n_train_steps``-th step and every
        ``every_n_epochs``-th epoch. Override it for another schedule.

        Args:
            step_idx: index of the last optimizer step, or ``None`` at an epoch end.
            epoch_idx: index of the last epoch, or ``None`` after an optimizer step.

        Returns:
            ``True`` to compute a certificate now.
        """
        if step_idx is not None:
            return self.every_n_train_steps is not None and (step_idx + 1) % self.every_n_train_steps == 0
        if epoch_idx is not None:
            return self.every_n_epochs is not None and (epoch_idx + 1) % self.every_n_epochs == 0
        return False

    # -- hooks ----------------------------------------------------------------------------------
    def setup(self, trainer, pl_module, stage: str) -> None:
        """Called when fit, validate, test or predict begins.

        For fit: finds the module's single ``ParallelReLU`` and ``beta`` so that a misconfigured
        module fails before training rather than at the first certificate.
        """
        if stage == "fit":
            find_network(pl_module)
            find_beta(pl_module, self.beta)

    def on_train_start(self, trainer, pl_module) -> None:
        """Called when training begins, after the optimizers exist.

        Refuses an optimizer that applies weight decay to the network's first layer, and reads
        (then caches) this rank's unpadded shard of the training set, checking it is finite.
        """
        net = find_network(pl_module)
        check_no_weight_decay(trainer, net)
        X, y = self._training_shard(trainer, pl_module)
        if not (bool(torch.isfinite(X).all()) and bool(torch.isfinite(y).all())):
            raise ValueError("the training set contains NaN or inf entries: the certificate needs finite data")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        """Called when a training batch ends: certifies when :meth:`should_certify` says so
        for the last optimizer step (once per optimizer step under gradient accumulation)."""
        if self.every_n_train_steps is None or trainer.sanity_checking:
            return
        step_idx = trainer.global_step - 1
        if trainer.global_step > self._latest_step and self.should_certify(step_idx=step_idx):
            self._latest_step = trainer.global_step
            self._run(trainer, pl_module, on_step=True)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        """Called when a training epoch ends: certifies when :meth:`should_certify` says so."""
        if trainer.sanity_checking:
            return
        epoch = trainer.current_epoch
        if epoch > self._latest_epoch and self.should_certify(epoch_idx=epoch):
            self._latest_epoch = epoch
            self._run(trainer, pl_module, on_step=False)

    def on_certificate(self, trainer, pl_module, certificate: Certificate, on_step: bool) -> None:
        """Called with every new certificate (on every rank, with equal values).

        The default logs ``convex/primal``, ``convex/lower_bound``, ``convex/gap``,
        ``convex/relative_gap`` and, after a search, ``convex/max_violation``. Override it to do
        more (keep calling ``super()`` to keep the logging).
        """
        for name, value in certificate.metrics().items():
            pl_module.log(
                f"convex/{name}", torch.tensor(value, dtype=torch.float64), on_step=on_step,
                on_epoch=not on_step, prog_bar=self.prog_bar, logger=True, sync_dist=False,
            )

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        """Called when fit is interrupted: drops the cached training shard."""
        self._shard = self._shard_key = None

    def teardown(self, trainer, pl_module, stage: str) -> None:
        """Called when fit, validate, test or predict ends: drops the cached training shard."""
        self._shard = self._shard_key = None

    # -- checkpointing ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Plain values only (checkpoints load with ``weights_only``)."""
        return {
            "num_certificates": int(self._num_certificates),
            "latest_step": int(self._latest_step),
            "latest_epoch": int(self._latest_epoch),
            "last": {k: float(v) for k, v in self._last_metrics.items()},
            "seed": int(self.seed),
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the counters and the last certificate's values."""
        self._num_certificates = int(state_dict.get("num_certificates", 0))
        self._latest_step = int(state_dict.get("latest_step", 0))
        self._latest_epoch = int(state_dict.get("latest_epoch", -1))
        self._last_metrics = {k: float(v) for k, v in dict(state_dict.get("last", {})).items()}
        self.seed = int(state_dict.get("seed", self.seed))

    @property
    def num_certificates(self) -> int:
        """Certificates computed so far (restored from checkpoints)."""
        return self._num_certificates

    @property
    def last_metrics(self) -> dict:
        """The last certificate's logged values as floats (restored from checkpoints)."""
        return dict(self._last_metrics)

    # -- the work -----------------------------------------------------------------------------------
    def _training_shard(self, trainer, pl_module):
        key = (world(trainer), str(pl_module.device))
        if self._shard is None or self._shard_key != key:
            self._shard = training_shard(trainer, pl_module, self.data)
            self._shard_key = key
        return self._shard

    def certify(self, trainer, pl_module) -> Certificate:
        """Compute the certificate now (every rank must call it: it synchronises)."""
        net = find_network(pl_module)
        beta = find_beta(pl_module, self.beta)
        X, y = self._training_shard(trainer, pl_module)
        generator = None
        if self.extra_patterns or self.search:
            # the same draw on every rank, a new one for each certificate
            generator = torch.Generator(device="cpu").manual_seed(self.seed + self._num_certificates)
        sync = _StrategySync(trainer) if world(trainer)[1] > 1 else RowSync()
        kwargs = dict(self.certify_kwargs)
        return certify(
            net, X, y, beta, extra_patterns=self.extra_patterns, search=self.search,
            generator=generator, sync=sync, **kwargs,
        )

    def _run(self, trainer, pl_module, on_step: bool) -> None:
        certificate = self.certify(trainer, pl_module)
        self._num_certificates += 1
        self.last_certificate = certificate
        self._last_metrics = certificate.metrics()
        if certificate.gap < -1e-8 * abs(certificate.primal):
            rank_zero_warn(
                f"negative duality gap {certificate.gap:.3e}: an inexact iterate (the network sits "
                "within tolerance outside its cones), not a better-than-optimal point"
            )
        self.on_certificate(trainer, pl_module, certificate, on_step)
        if not math.isnan(certificate.max_violation) and certificate.max_violation > 1 and not self._told:
            self._told = True
            rank_zero_info(
                f"convex certificate: max_violation {certificate.max_violation:.4g} > 1, the network "
                "is not globally optimal (a strict descent direction exists)"
            )
