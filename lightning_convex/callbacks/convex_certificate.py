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

from .._checks import check_int, check_number
from ..certificates import Certificate, certify, check_certify_options
from ..model import network_rows
from ._base import ConvexCallback


class ConvexCertificate(ConvexCallback):
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

    Each certificate spends about one epoch of training (``time_limit``): small programs are
    solved exactly (the gap is then J - OPT(S) to solver precision); larger ones run the scale
    engine from where the previous certificate's engine left off (:func:`lightning_convex.certify`,
    ``method`` and ``warm_start``): its one-time basis of the rows is built in pieces over the
    first certificates, each within its budget (they bound with the network's own dual points
    meanwhile), then its iterate and multipliers are continued, so the engine's iterations add
    up over a fit instead of starting cold each time. How tight the bound gets depends on how
    many iterations that adds up to; on large data a budget of one epoch buys few. That engine
    state lives in memory only: a fit resumed from a checkpoint starts it afresh.

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
        every_n_train_steps: certify after every n-th optimizer step (``None`` or 0: never).
        search: random starts of the descent-direction search (0: no search, no
            ``convex/max_violation``).
        data: the training set to certify on (an (X, y) pair of tensors, a Dataset or a
            DataLoader); ``None`` reads the Trainer's training dataloader's dataset.
        extra_patterns: random patterns added to the active set (scope "active set + N sampled").
        beta: the regularization weight; ``None`` reads ``pl_module.beta`` or its hparams.
        seed: seeds the sampled patterns and the search (the same on every rank).
        prog_bar: show the values in the progress bar.
        time_limit: seconds per certificate; ``None`` (default): about one epoch, the training
            time of the latest epoch (:attr:`last_epoch_seconds`, the largest over ranks), at
            least :attr:`TIME_LIMIT_FLOOR` seconds.
        certify_kwargs: passed on to :func:`lightning_convex.certify` (``method``, ``max_iter``,
            ``search_steps``, ``margin``, ...).
    """

    #: the least seconds a certificate gets by default (an epoch of a small data set takes
    #: milliseconds; programs small enough to be solved exactly are solved whatever the budget)
    TIME_LIMIT_FLOOR = 0.1
    #: :func:`~lightning_convex.certify` arguments the callback sets itself
    RESERVED = ("patterns", "multipliers", "solution", "sync", "generator", "warm_start")

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
        time_limit: Optional[float] = None,
        **certify_kwargs: Any,
    ) -> None:
        super().__init__(every_n_epochs, every_n_train_steps, beta=beta, data=data)
        self.search = check_int("search", search)
        self.extra_patterns = check_int("extra_patterns", extra_patterns)
        if time_limit is not None:
            time_limit = check_number("time_limit", time_limit)
        self.time_limit = time_limit
        for key in self.RESERVED:
            if key in certify_kwargs:
                raise ValueError(f"ConvexCertificate sets {key!r} itself; it cannot be passed")
        # unknown keywords and bad values fail here, not epochs into a fit
        check_certify_options(certify_kwargs)
        self.seed = int(seed)
        self.prog_bar = bool(prog_bar)
        self.certify_kwargs = certify_kwargs
        #: the most recent :class:`~lightning_convex.Certificate` (not saved in checkpoints)
        self.last_certificate: Optional[Certificate] = None
        self._last_metrics: dict = {}
        self._num_certificates = 0
        self._told = False
        self._rows = None  # (X, y, Rows): the shard prepared once for certify

    def _reset(self) -> None:
        super()._reset()
        self.last_certificate = None  # its engine state is the next certificate's warm start
        self._rows = None
        self._last_metrics = {}
        self._num_certificates = 0
        self._told = False

    # -- policy ---------------------------------------------------------------------------------
    def should_certify(self, step_idx: Optional[int] = None, epoch_idx: Optional[int] = None) -> bool:
        """Called after every optimizer step and after every training epoch to decide whether to
        certify now.

        One of the arguments is set to the zero-based index of the last optimizer step or
        epoch. The default certifies after every ``every_n_train_steps``-th step and every
        ``every_n_epochs``-th epoch (:meth:`scheduled`). Override it for another schedule.

        Args:
            step_idx: index of the last optimizer step, or ``None`` at an epoch end.
            epoch_idx: index of the last epoch, or ``None`` after an optimizer step.

        Returns:
            ``True`` to compute a certificate now.
        """
        return self.scheduled(step_idx=step_idx, epoch_idx=epoch_idx)

    def _is_due(self, trainer, step_idx: Optional[int] = None, epoch_idx: Optional[int] = None) -> bool:
        return self.should_certify(step_idx=step_idx, epoch_idx=epoch_idx)

    # -- hooks ----------------------------------------------------------------------------------
    def on_train_start(self, trainer, pl_module) -> None:
        """Called when training begins, after the optimizers exist.

        Reads (then caches) this rank's unpadded shard of the training set, checking it is
        finite; then the base's checks and resume replay (see :class:`ConvexCallback`).
        """
        X, y = self._training_shard(trainer, pl_module)
        if not (bool(torch.isfinite(X).all()) and bool(torch.isfinite(y).all())):
            raise ValueError("the training set contains NaN or inf entries: the certificate needs finite data")
        super().on_train_start(trainer, pl_module)

    def on_certificate(self, trainer, pl_module, certificate: Certificate, on_step: bool) -> None:
        """Called with every new certificate (on every rank, with equal values).

        The default logs ``convex/primal``, ``convex/lower_bound``, ``convex/gap``,
        ``convex/relative_gap`` and, after a search, ``convex/max_violation``. Override it to do
        more (keep calling ``super()`` to keep the logging).
        """
        values = {f"convex/{name}": value for name, value in certificate.metrics().items()}
        self._log(trainer, pl_module, values, on_step=on_step, prog_bar=self.prog_bar)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        """Called when fit is interrupted: drops the cached training rows."""
        super().on_exception(trainer, pl_module, exception)
        self._rows = None

    def teardown(self, trainer, pl_module, stage: str) -> None:
        """Called when fit, validate, test or predict ends: drops the cached training rows (the
        last certificate and its engine state stay, for inspection)."""
        super().teardown(trainer, pl_module, stage)
        self._rows = None

    # -- checkpointing ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Called when saving a checkpoint.

        Returns:
            plain values only (checkpoints load with ``weights_only``): the schedule's counters,
            the number of certificates, the last certificate's values and the seed.
        """
        return {
            **super().state_dict(),
            "num_certificates": int(self._num_certificates),
            "last": {k: float(v) for k, v in self._last_metrics.items()},
            "seed": int(self.seed),
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Called when loading a checkpoint: restores the counters and the last certificate's
        values."""
        super().load_state_dict(state_dict)
        self._num_certificates = int(state_dict.get("num_certificates", 0))
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
    def budget(self) -> float:
        """The seconds the next certificate may spend: ``time_limit``, or by default the latest
        epoch's training time, at least :attr:`TIME_LIMIT_FLOOR`. Override it for another
        policy."""
        if self.time_limit is not None:
            return float(self.time_limit)
        return max(self.TIME_LIMIT_FLOOR, self.last_epoch_seconds or 0.0)

    def certify(self, trainer, pl_module) -> Certificate:
        """Compute the certificate now (every rank must call it: it synchronises)."""
        net, beta = self._network(pl_module)
        X, y = self._training_shard(trainer, pl_module)
        if self._rows is None or self._rows[0] is not X or self._rows[1] is not y or \
                self._rows[2].bias != net.bias or self._rows[2].device != net.W1.device:
            # validated and converted (float64, bias column) once per shard, not per certificate
            self._rows = (X, y, network_rows(net, X, y))
        generator = None
        if self.extra_patterns or self.search:
            # the same draw on every rank, a new one for each certificate
            generator = torch.Generator(device="cpu").manual_seed(self.seed + self._num_certificates)
        kwargs = dict(self.certify_kwargs)
        if self.time_limit is not None or "max_iter" not in kwargs:  # a fixed max_iter alone: no clock
            kwargs["time_limit"] = self.budget()
        return certify(
            net, self._rows[2], None, beta, extra_patterns=self.extra_patterns, search=self.search,
            generator=generator, sync=self._sync(trainer), warm_start=self.last_certificate, **kwargs,
        )

    def _run(self, trainer, pl_module, step_idx: Optional[int] = None, epoch_idx: Optional[int] = None) -> None:
        certificate = self.certify(trainer, pl_module)
        self._num_certificates += 1
        self.last_certificate = certificate
        self._last_metrics = certificate.metrics()
        if certificate.gap < -1e-8 * abs(certificate.primal):
            self._report(
                f"negative duality gap {certificate.gap:.3e}: an inexact iterate (the network sits "
                "within tolerance outside its cones), not a better-than-optimal point", warn=True,
            )
        self.on_certificate(trainer, pl_module, certificate, on_step=step_idx is not None)
        if certificate.suboptimal and not self._told:
            self._told = True
            self._report(
                f"convex certificate: max_violation {certificate.max_violation:.4g} > 1 + "
                f"{certificate.margin:g}, the network is not globally optimal (a strict descent "
                "direction exists)"
            )
