"""The base of the library's callbacks: one Lightning base class for both import styles, the
schedule, the checkpoint state key, this rank's training shard, the strategy's row sync and
rank-zero output."""

from __future__ import annotations

import time
from typing import Any, Dict, Optional, Tuple

import torch
from lightning_utilities.core.rank_zero import rank_zero_info, rank_zero_warn

from .._checks import check_int
from .._compat import available_namespaces, namespace
from ..model import ParallelReLU
from ._common import check_no_weight_decay, find_beta, find_network, training_shard, world
from ._strategy_sync import StrategySync

# One class serves both import styles: a Trainer of either style calls the hooks of a callback of
# the other (duck typing, MATH.md section 7), so the base class only has to pass the Trainer's
# isinstance check on its callbacks list, which any installed style's ``Callback`` does.
_Callback = namespace(available_namespaces()[0]).Callback


class ConvexCallback(_Callback):
    """What :class:`~lightning_convex.callbacks.ConvexCertificate` and
    :class:`~lightning_convex.callbacks.ActiveSetWarmStart` share.

    A subclass acts at chosen points of a fit: after optimizer steps and at training-epoch ends.
    It says when through :meth:`_is_due` (which asks its documented policy method, e.g.
    ``should_certify``; :meth:`scheduled` is the default schedule such a method follows) and
    what it does through :meth:`_run`. The base keeps the index of the latest point acted on,
    so a point is never handled twice and a resumed fit knows what it already did.

    Every new fit starts from a fresh state (an instance can serve several fits); a fit resumed
    from a checkpoint restores it. A checkpoint written at an epoch end before this callback
    acted there (``ModelCheckpoint`` saving at validation end, which Lightning runs before the
    training-epoch-end hooks) gets that point replayed when training resumes, logged under its
    own epoch, so the resumed fit logs what an uninterrupted one does.

    Args:
        every_n_epochs: act after every this many training epochs (``None`` or 0: never by epochs).
        every_n_train_steps: act after every this many optimizer steps (``None`` or 0: never by
            steps). Both schedules apply when both are set.
        beta: the regularization weight; ``None`` reads the module's ``beta`` (or hyperparameter).
        data: the training set as ``(X, y)``, a Dataset or a DataLoader; ``None`` reads the
            Trainer's training dataloader's dataset.
    """

    def __init__(self, every_n_epochs: Optional[int], every_n_train_steps: Optional[int],
                 beta: Optional[float] = None, data: Any = None) -> None:
        self.every_n_epochs = check_int("every_n_epochs", every_n_epochs, optional=True) or None
        self.every_n_train_steps = check_int("every_n_train_steps", every_n_train_steps, optional=True) or None
        self.beta = beta
        self.data = data
        # epoch index (-1: none yet) and optimizer-step count (0: none yet) of the latest point
        # acted on
        self._latest_epoch = -1
        self._latest_step = 0
        self._shard: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
        self._shard_key = None
        # the epoch of a point being replayed on resume (its values are logged under it)
        self._replay_epoch: Optional[int] = None
        # wall time of the current epoch's training so far: budgets are set in epochs
        self._epoch_started: Optional[float] = None
        self._epoch_trained: float = 0.0
        self._epoch_work: float = 0.0  # this callback's own work during the epoch, not training
        self._last_epoch_seconds: Optional[float] = None

    def _reset(self) -> None:
        """Forget the previous fit (called when a fit begins, before any checkpoint restores
        state); subclasses reset their own state too and call ``super()._reset()``."""
        self._latest_epoch = -1
        self._latest_step = 0
        self._shard = self._shard_key = None

    @property
    def state_key(self) -> str:
        """Identifies this callback's state in checkpoints: the class name and the schedule, so
        that instances with different schedules can coexist in one Trainer."""
        return self._generate_state_key(
            every_n_epochs=self.every_n_epochs, every_n_train_steps=self.every_n_train_steps
        )

    # -- schedule -------------------------------------------------------------------------------
    def scheduled(self, step_idx: Optional[int] = None, epoch_idx: Optional[int] = None) -> bool:
        """The default schedule: after every ``every_n_train_steps``-th optimizer step and every
        ``every_n_epochs``-th epoch (``step_idx`` and ``epoch_idx`` are zero-based; one of them
        is given)."""
        if step_idx is not None:
            return self.every_n_train_steps is not None and (step_idx + 1) % self.every_n_train_steps == 0
        if epoch_idx is not None:
            return self.every_n_epochs is not None and (epoch_idx + 1) % self.every_n_epochs == 0
        return False

    def _is_due(self, trainer, step_idx: Optional[int] = None, epoch_idx: Optional[int] = None) -> bool:
        """Whether to act after optimizer step ``step_idx`` or at the end of epoch ``epoch_idx``."""
        raise NotImplementedError

    def _run(self, trainer, pl_module, step_idx: Optional[int] = None, epoch_idx: Optional[int] = None) -> None:
        """Act now (on every rank: the work synchronises)."""
        raise NotImplementedError

    # -- hooks ----------------------------------------------------------------------------------
    def setup(self, trainer, pl_module, stage: str) -> None:
        """Called when fit, validate, test or predict begins.

        For fit: forgets any previous fit's state (a checkpoint restores it afterwards) and finds
        the module's single ``ParallelReLU`` and ``beta``, so that a misconfigured module fails
        before training rather than at the first point acted on.
        """
        if stage == "fit":
            self._reset()
            self._network(pl_module)

    def on_train_start(self, trainer, pl_module) -> None:
        """Called when training begins, after the optimizers exist and any checkpoint is restored.

        Refuses an optimizer that applies weight decay to the network's first layer (a different
        objective, MATH.md section 1), and replays the point at the end of the previous epoch when
        the checkpoint this fit resumed from was written before it.
        """
        check_no_weight_decay(trainer, find_network(pl_module))
        previous = int(trainer.current_epoch) - 1
        if previous >= 0 and previous > self._latest_epoch and self._is_due(trainer, epoch_idx=previous):
            self._latest_epoch = previous
            self._replay_epoch = previous
            try:
                self._run(trainer, pl_module, epoch_idx=previous)
            finally:
                self._replay_epoch = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        """Called when a training epoch begins: starts timing the epoch's training."""
        self._epoch_started = time.perf_counter()
        self._epoch_trained = self._epoch_work = 0.0

    @property
    def last_epoch_seconds(self) -> Optional[float]:
        """Wall seconds of the latest training epoch's batches (from the epoch's start to its last
        batch, so the convex work at its end is not counted); ``None`` before the first one."""
        return self._last_epoch_seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        """Called when a training batch ends: acts when :meth:`_is_due` says so for the last
        optimizer step (once per optimizer step under gradient accumulation)."""
        if self._epoch_started is not None:
            self._epoch_trained = time.perf_counter() - self._epoch_started - self._epoch_work
        step = int(trainer.global_step)
        if step > 0 and step > self._latest_step and self._is_due(trainer, step_idx=step - 1):
            self._latest_step = step
            self._act(trainer, pl_module, step_idx=step - 1)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        """Called when a training epoch ends: acts when :meth:`_is_due` says so."""
        if self._epoch_trained > 0:
            self._last_epoch_seconds = self._epoch_trained
        epoch = int(trainer.current_epoch)
        if epoch > self._latest_epoch and self._is_due(trainer, epoch_idx=epoch):
            self._latest_epoch = epoch
            self._act(trainer, pl_module, epoch_idx=epoch)

    def _act(self, trainer, pl_module, **point) -> None:
        """:meth:`_run` at ``point``, its wall time kept out of the epoch's training time."""
        started = time.perf_counter()
        try:
            self._run(trainer, pl_module, **point)
        finally:
            self._epoch_work += time.perf_counter() - started

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        """Called when fit is interrupted: drops the cached training shard."""
        self._shard = self._shard_key = None

    def teardown(self, trainer, pl_module, stage: str) -> None:
        """Called when fit, validate, test or predict ends: drops the cached training shard."""
        self._shard = self._shard_key = None

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: Dict[str, Any]) -> None:
        """Called when loading a checkpoint, before :meth:`load_state_dict`: a checkpoint written
        while this callback's state key was its bare class name (before the schedule was part
        of it) has its state restored from there."""
        states = checkpoint.get("callbacks") or {}
        legacy = type(self).__qualname__
        if self.state_key not in states and legacy in states:
            self.load_state_dict(states[legacy])

    def state_dict(self) -> Dict[str, Any]:
        """Called when saving a checkpoint.

        Returns:
            plain Python values only (checkpoints load with ``torch.load(weights_only=True)``):
            here the latest epoch and step acted on; subclasses add theirs.
        """
        return {"latest_epoch": int(self._latest_epoch), "latest_step": int(self._latest_step)}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Called when loading a checkpoint: restores what :meth:`state_dict` returned."""
        self._latest_epoch = int(state_dict.get("latest_epoch", -1))
        self._latest_step = int(state_dict.get("latest_step", 0))

    # -- what the work reads --------------------------------------------------------------------
    def _network(self, pl_module) -> Tuple[ParallelReLU, float]:
        """The module's single ParallelReLU and beta (ValueError when either is missing)."""
        return find_network(pl_module), find_beta(pl_module, self.beta)

    def _training_shard(self, trainer, pl_module) -> Tuple[torch.Tensor, torch.Tensor]:
        """This rank's unpadded shard of the training set (rank r: rows r, r + W, ...), read once
        per fit and device."""
        key = (world(trainer), str(pl_module.device))
        if self._shard is None or self._shard_key != key:
            self._shard = training_shard(trainer, pl_module, self.data)
            self._shard_key = key
        return self._shard

    @staticmethod
    def _sync(trainer) -> StrategySync:
        """How this fit's row shards combine (the identity on one process)."""
        return StrategySync(trainer)

    def _log(self, trainer, pl_module, values: Dict[str, float], on_step: bool, prog_bar: bool = False) -> None:
        """Log ``values`` (name -> float) through Lightning: per step after an optimizer step,
        per epoch at an epoch end. A replayed epoch-end point is written to the loggers under
        its own epoch and the step count that epoch ended at, as the uninterrupted fit wrote it
        (``self.log`` there would file it under the epoch being started)."""
        if self._replay_epoch is None:
            for name, value in values.items():
                pl_module.log(name, torch.tensor(float(value), dtype=torch.float64), on_step=on_step,
                              on_epoch=not on_step, prog_bar=prog_bar, logger=True, batch_size=1,
                              sync_dist=False)
            return
        metrics = {name: float(value) for name, value in values.items()}
        trainer.callback_metrics.update({k: torch.tensor(v, dtype=torch.float64) for k, v in metrics.items()})
        step = int(getattr(trainer.fit_loop.epoch_loop, "_batches_that_stepped", trainer.global_step))
        for logger in trainer.loggers:
            logger.log_metrics({**metrics, "epoch": float(self._replay_epoch)}, step=step)

    @staticmethod
    def _report(message: str, warn: bool = False) -> None:
        """Say ``message`` on global rank 0 only: a ``UserWarning`` with ``warn``, else an info
        line on the Lightning logger."""
        (rank_zero_warn if warn else rank_zero_info)(message)
