r"""
Active-Set Warm Start
^^^^^^^^^^^^^^^^^^^^^

Hybrid convex/SGD training (Remark 3 of Ergen & Pilanci, ICML 2021; MATH.md sections 3, 4, 8):
every so often, jump the :class:`~lightning_convex.ParallelReLU` to the optimum of the convex
program restricted to its own activation patterns, iterated to a fixed point
(:func:`~lightning_convex.active_set_solve`), and let SGD continue from there.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch

from .._checks import check_int
from ..active_set import SPARE_POLICIES, active_set_solve
from ..solution import SolveStatus
from ._base import ConvexCallback
from ._common import broadcast_parameters, world

#: ``convex/warmstart_status`` codes: the position of the last solve's status here.
STATUS_CODES = tuple(status.value for status in SolveStatus)


class ActiveSetWarmStart(ConvexCallback):
    r"""Warm-start SGD from the restricted convex optimum over the network's own patterns.

    At each chosen point (see :meth:`should_update`) the callback

    1. reads the full training set (every rank's unpadded shard, gathered in row order, so the
       solve sees all n rows exactly once even where ``DistributedSampler`` pads),
    2. on rank 0 runs :func:`~lightning_convex.active_set_solve`: read the patterns S(theta)
       (plus ``extra_patterns`` sampled ones and, with ``search > 0``, the violators of a
       certificate search, in the first round), solve the restricted program over S, rebuild the
       K branches in place (keeping the K largest patterns by t_p and solving again when more
       come out nonzero), and repeat until OPT(S(theta)) >= (1 - rtol) J(theta) or a pattern set
       repeats, up to ``max_rounds``,
    3. broadcasts rank 0's parameters, so every rank ends with identical weights,
    4. when the network changed, clears the optimizer state (Adam moments, step counts) of the
       ParallelReLU's parameters (``reset_optimizer``): moments accumulated at the old weights
       would push the new ones off the optimum,
    5. logs ``convex/warmstart_before``, ``convex/warmstart_after`` (J in the sum form of MATH.md
       section 1, float64, on the full training set), ``convex/warmstart_rounds``,
       ``convex/warmstart_solver_seconds``, ``convex/warmstart_status`` (the index of the last
       solve's status in :data:`STATUS_CODES`; 0 is optimal) and ``convex/warmstart_converged``
       (1 when the rounds reached a fixed point), through Lightning logging.

    Guarantees: J never rises (after <= before at every warm start: a failed, inaccurate or worse
    solve leaves the network untouched and says so); every rank ends with the same weights; a
    checkpoint taken after a warm start resumes exactly (the state is plain values and the
    sampling generator's state; a checkpoint taken before the warm start of its epoch, e.g. by
    ``ModelCheckpoint`` at validation end, gets that warm start replayed on resume and logged
    under its own epoch); each new fit starts afresh (the generator re-seeded, the history
    cleared) unless it resumes from a checkpoint.

    Spare branches: branches the solution leaves unused become exactly zero, and an exactly-zero
    branch never revives under SGD (its gradients vanish). ``spare="zero"`` (default) keeps them
    off between warm starts: SGD refines the active branches, and spare branches are refilled by
    the convex step itself whenever a sampled (``extra_patterns``) or violating (``search``)
    pattern earns a place in the next solve. So every warm start ends at the restricted optimum
    over the set it solved, a point a certificate can check. ``spare="reseed"`` restarts each
    spare branch from the random branch best correlated with the residual, at the step that
    lowers J for a descent direction, else at a scale adding at most ``spare_tol * J`` in total
    (see :mod:`lightning_convex.active_set`); the network then leaves the optimum it just reached,
    betting that SGD grows the new branches into better patterns than the solve can find. That
    bet is not the default because it showed no consistent gain over ``"zero"`` in hybrid
    training on the Table-1 sets (BENCHMARKS.md, "Spare-branch policy and extra patterns"). The
    warm start at the end of training (``at_train_end``) never re-seeds, whatever ``spare`` says:
    no SGD follows.

    Works with ``pytorch_lightning`` and ``lightning.pytorch`` Trainers alike: nothing here
    ``isinstance``-checks the trainer, strategy or module.

    Example::

        from lightning_convex import ParallelReLU, ParallelReLURegressor
        from lightning_convex.callbacks import ActiveSetWarmStart

        model = ParallelReLURegressor(ParallelReLU(d, 7, 10, bias=True), beta=0.1)
        trainer = Trainer(max_epochs=30, callbacks=[ActiveSetWarmStart(every_n_epochs=10)])
        trainer.fit(model, loader)

    Args:
        every_n_epochs: warm start after every this many training epochs (``None`` or 0: never
            by epochs).
        every_n_train_steps: warm start after every this many optimizer steps (``None`` or 0:
            never by steps). Both schedules apply when both are set.
        solver: the backend for :func:`lightning_convex.solve` (``"auto"``, ``"clarabel"``, ...).
        extra_patterns: sampled patterns (Remark 3) added to the first round of each warm start.
        search: size of a certificate search whose violating patterns join the first round
            (needs ``lightning_convex.certify``); 0 for none.
        reset_optimizer: clear the optimizer state of the network's parameters after a change.
        max_rounds: the most active-set rounds per warm start.
        rtol: a warm start's rounds stop when OPT(S(theta)) >= (1 - rtol) J(theta).
        spare: ``"zero"`` or ``"reseed"`` (see above).
        spare_tol: the most re-seeding may add to J, relative to J.
        at_train_end: also warm start after the last epoch of the fit (``max_epochs``) when the
            schedule does not, so that the fit ends at a fixed point.
        beta: the regularization weight; default: the module's ``beta`` (or hyperparameter).
        data: the training set as ``(X, y)``, a Dataset or a DataLoader; default: the trainer's
            training set.
        seed: seed of the generator used for sampled patterns, searches and re-seeding.
        solver_options: extra keyword arguments for the solver (``tol``, ``max_iter``, ...).
        verbose: report each warm start through ``rank_zero_info``.
    """

    def __init__(
        self,
        every_n_epochs: Optional[int] = 10,
        every_n_train_steps: Optional[int] = None,
        solver: str = "auto",
        extra_patterns: int = 0,
        search: int = 0,
        reset_optimizer: bool = True,
        max_rounds: int = 100,
        rtol: float = 1e-7,
        spare: str = "zero",
        spare_tol: float = 1e-6,
        at_train_end: bool = True,
        beta: Optional[float] = None,
        data=None,
        seed: int = 0,
        solver_options: Optional[dict] = None,
        verbose: bool = True,
    ) -> None:
        super().__init__(every_n_epochs, every_n_train_steps, beta=beta, data=data)
        self.extra_patterns = check_int("extra_patterns", extra_patterns)
        self.search = check_int("search", search)
        self.max_rounds = check_int("max_rounds", max_rounds, minimum=1)
        if spare not in SPARE_POLICIES:
            raise ValueError(f"spare must be one of {SPARE_POLICIES}, got {spare!r}")
        self.solver = solver
        self.reset_optimizer = bool(reset_optimizer)
        self.rtol = float(rtol)
        self.spare = spare
        self.spare_tol = float(spare_tol)
        self.at_train_end = bool(at_train_end)
        self.seed = int(seed)
        self.solver_options = dict(solver_options or {})
        self.verbose = bool(verbose)

        self._generator = torch.Generator().manual_seed(self.seed)
        #: One dict of plain values per warm start (epoch, step, before, after, rounds, ...).
        self.history: List[Dict[str, Any]] = []

    def _reset(self) -> None:
        super()._reset()
        self._generator = torch.Generator().manual_seed(self.seed)
        self.history = []

    # -- policy ----------------------------------------------------------------------------------
    def should_update(self, step_idx: Optional[int] = None, epoch_idx: Optional[int] = None) -> bool:
        """Called after every optimizer step and after every training epoch: whether to warm start.

        One of the arguments is the zero-based index of the step or epoch just finished. The
        default (:meth:`scheduled`) follows ``every_n_train_steps`` and ``every_n_epochs``;
        override it for another schedule (e.g. only after epoch 50, or every 2**k epochs).

        Args:
            step_idx: index of the last optimizer step, or ``None`` when called at an epoch end.
            epoch_idx: index of the last epoch, or ``None`` when called after a step.

        Returns:
            ``True`` to warm start now.
        """
        return self.scheduled(step_idx=step_idx, epoch_idx=epoch_idx)

    def _is_due(self, trainer, step_idx: Optional[int] = None, epoch_idx: Optional[int] = None) -> bool:
        if self.should_update(step_idx=step_idx, epoch_idx=epoch_idx):
            return True
        # the fit's last epoch ends at a fixed point with at_train_end
        return epoch_idx is not None and self.at_train_end and self._is_last_epoch(trainer, epoch_idx)

    def state_dict(self) -> Dict[str, Any]:
        """Called when saving a checkpoint.

        Returns:
            The callback state: plain Python values and the generator state (a uint8 tensor), so
            that checkpoints load under ``torch.load(weights_only=True)``.
        """
        return {
            **super().state_dict(),
            "generator_state": self._generator.get_state(),
            "history": [dict(entry) for entry in self.history],
        }

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Called when loading a checkpoint.

        Args:
            state_dict: the dictionary :meth:`state_dict` returned.
        """
        super().load_state_dict(state_dict)
        self._generator.set_state(torch.as_tensor(state_dict["generator_state"], dtype=torch.uint8).cpu())
        self.history = [dict(entry) for entry in state_dict.get("history", [])]

    # -- the warm start --------------------------------------------------------------------------
    @staticmethod
    def _is_last_epoch(trainer, epoch: int) -> bool:
        max_epochs = getattr(trainer, "max_epochs", None)
        if max_epochs is not None and max_epochs >= 0 and epoch >= max_epochs - 1:
            return True
        return ActiveSetWarmStart._is_last_step(trainer)

    @staticmethod
    def _is_last_step(trainer) -> bool:
        max_steps = getattr(trainer, "max_steps", -1)
        return max_steps is not None and max_steps >= 0 and int(trainer.global_step) >= max_steps

    def _training_set(self, trainer, pl_module):
        """(X, y) of the full training set on every rank, in the dataset's row order."""
        X, y = self._training_shard(trainer, pl_module)
        sync = self._sync(trainer)
        if not sync.distributed:
            return X, y
        order = torch.argsort(sync.cat(sync.row_ids(X.shape[0], X.device)))
        return sync.cat(X)[order], sync.cat(y)[order]

    @torch.no_grad()
    def _reset_optimizer_state(self, trainer, net) -> None:
        params = {id(p) for p in net.parameters()}
        for optimizer in getattr(trainer, "optimizers", None) or []:
            for param in list(optimizer.state.keys()):
                if id(param) in params:
                    del optimizer.state[param]

    def _run(self, trainer, pl_module, step_idx: Optional[int] = None, epoch_idx: Optional[int] = None) -> None:
        if self._replay_epoch is not None:
            final = False  # a replayed point is never the end of the fit: training follows
        elif step_idx is not None:
            final = self._is_last_step(trainer)
        else:
            final = self._is_last_epoch(trainer, epoch_idx)
        self._warm_start(trainer, pl_module, step_idx=step_idx, epoch_idx=epoch_idx, final=final)

    def _warm_start(self, trainer, pl_module, step_idx: Optional[int] = None,
                    epoch_idx: Optional[int] = None, final: bool = False) -> None:
        net, beta = self._network(pl_module)
        X, y = self._training_set(trainer, pl_module)
        rank, size = world(trainer)
        summary = None
        if rank == 0:
            result = active_set_solve(
                net, X, y, beta, solver=self.solver, extra_patterns=self.extra_patterns,
                search=self.search, max_rounds=self.max_rounds, rtol=self.rtol,
                generator=self._generator, spare="zero" if final else self.spare,
                spare_tol=self.spare_tol, solver_options=self.solver_options, warn=False,
            )
            summary = {
                "epoch": int(trainer.current_epoch if epoch_idx is None else epoch_idx),
                "step": int(trainer.global_step),
                "before": float(result.objective_before),
                "after": float(result.objective_after),
                "rounds": int(result.rounds),
                "solves": int(result.solves),
                "solver_seconds": float(result.solver_seconds),
                "seconds": float(result.seconds),
                "status": str(result.status),
                "stop_reason": str(result.stop_reason),
                "converged": bool(result.converged),
                "changed": bool(result.changed),
                "active": int(result.active),
                "reseeded": int(result.reseeded),
                "final": bool(final),
                "messages": [str(m) for m in result.messages],
            }
        if size > 1:
            summary = trainer.strategy.broadcast(summary, src=0)
            broadcast_parameters(trainer, net, src=0)
        if summary["changed"] and self.reset_optimizer:
            self._reset_optimizer_state(trainer, net)
        if epoch_idx is not None:
            self._latest_epoch = max(self._latest_epoch, epoch_idx)
        self.history.append({k: v for k, v in summary.items() if k != "messages"})

        on_step = step_idx is not None
        status_code = STATUS_CODES.index(summary["status"]) if summary["status"] in STATUS_CODES else -1
        self._log(trainer, pl_module, {
            "convex/warmstart_before": summary["before"],
            "convex/warmstart_after": summary["after"],
            "convex/warmstart_rounds": summary["rounds"],
            "convex/warmstart_solver_seconds": summary["solver_seconds"],
            "convex/warmstart_status": status_code,
            "convex/warmstart_converged": float(summary["converged"]),
        }, on_step=on_step)
        where = f"step {step_idx + 1}" if on_step else f"epoch {epoch_idx}"
        if self.verbose:
            for message in summary["messages"]:
                self._report(f"ActiveSetWarmStart ({where}): {message}")
            extra = f", {summary['reseeded']} spare branches re-seeded" if summary["reseeded"] else ""
            self._report(
                f"ActiveSetWarmStart ({where}): J {summary['before']:.8g} -> {summary['after']:.8g} in "
                f"{summary['rounds']} rounds ({summary['stop_reason']}, last status {summary['status']}, "
                f"{summary['solver_seconds']:.2f} s in the solver), {summary['active']} of "
                f"{net.branches} branches active{extra}",
            )
        if summary["stop_reason"] in ("failed", "worse"):
            last = summary["messages"][-1] if summary["messages"] else summary["stop_reason"]
            self._report(f"ActiveSetWarmStart ({where}): {last}", warn=True)
