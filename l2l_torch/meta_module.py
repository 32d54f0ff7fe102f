"""Meta-training as a LightningModule: orchestration only. The optimizer network, the unroll, the meta-gradient
estimator, the truncation schedule and the tasks live in their own modules; the meta-optimizer and its schedule come
from LightningCLI's ``optimizer:`` and ``lr_scheduler:``. A ``training_step`` is one truncation and one theta update.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from l2l_torch.estimators import GradientEstimator, TruncatedBPTT, set_flat_grad
from l2l_torch.learned_optimizers import LearnedOptimizerBase
from l2l_torch.optim import LearnedOptimizer
from l2l_torch.run_state import restore_optimizees, rng_state, save_optimizees, set_rng_state
from l2l_torch.tasks.base import TEST_SEED_OFFSET, VAL_SEED_OFFSET, TaskFamily
from l2l_torch.tasks.family_mixture import FamilyMixture
from l2l_torch.training import train_optimizee
from l2l_torch.truncation import TruncationSchedule
from l2l_torch.unroll import UnrollState, init_unroll


class MetaModule(L.LightningModule):
    """Meta-train the learned optimizer ``lopt`` on the task family ``task``.

    Args:
        task: the task family optimizees are drawn from.
        lopt: the learned optimizer (its parameters are theta).
        estimator: the meta-gradient estimator (default :class:`~l2l_torch.estimators.TruncatedBPTT`).
        truncation: horizon, truncation length and meta-loss weights (default
            :class:`~l2l_torch.truncation.TruncationSchedule`).
        tasks_per_step: task instances (optimizees) per meta-step.
        grad_clip: max global norm of the meta-gradient (0 disables clipping).
        loss_bound: a truncation whose optimizee loss exceeds this, or is not finite, is dropped.
        val_every: meta-steps between validations (one Lightning "epoch").
        val_tasks: held-out task instances per validation.
        val_horizon: optimizee steps in validation (default: the truncation's horizon).
        val_seed: validation uses instances ``VAL_SEED_OFFSET + val_seed + i`` (a fine-tune: not its warm start's).
        seed: base seed of the training task instances. It does not follow ``--seed_everything``, which seeds the
            learned optimizer's initial weights and the estimator's noise: runs that differ only in
            ``--seed_everything`` meta-train on the same sequence of instances. Set both to vary both.
    """

    def __init__(self, task: TaskFamily, lopt: LearnedOptimizerBase, estimator: GradientEstimator | None = None,
                 truncation: TruncationSchedule | None = None, tasks_per_step: int = 1, grad_clip: float = 1.0,
                 loss_bound: float = 1e6, val_every: int = 50, val_tasks: int = 8, val_horizon: int | None = None,
                 val_seed: int = 0, seed: int = 0) -> None:
        super().__init__()
        if val_seed > (top := TEST_SEED_OFFSET - VAL_SEED_OFFSET - val_tasks) or val_seed < 0:
            raise ValueError(f"val_seed must be in [0, {top}] (below the evaluation seeds), got {val_seed}")
        self.save_hyperparameters(ignore=["task", "lopt", "estimator", "truncation"])
        self.automatic_optimization = False
        self.task, self.lopt = task, lopt
        self.estimator = estimator if estimator is not None else TruncatedBPTT()
        self.truncation = truncation if truncation is not None else TruncationSchedule()
        self._states: list[UnrollState] = []  # the particles in flight
        self._state_seeds: list[int] = []  # task seed of each particle (to checkpoint them)
        self._pending: list[dict[str, Any]] | None = None  # particles read from a checkpoint, rebuilt lazily
        self._next_task = 0  # counter of training task instances (checkpointed)
        self._kinds_seen: set[str] = set()  # param kinds (conv/dense) meta-trained on, for the checkpoint
        self.skipped = 0  # truncations dropped for non-finite or exploding values (checkpointed)

    def configure_optimizers(self):
        """Adam at 1e-3 on theta; LightningCLI replaces it with the config's ``optimizer:``/``lr_scheduler:``."""
        return torch.optim.Adam(self.lopt.parameters(), lr=1e-3)

    def train_dataloader(self):  # an "epoch" is val_every meta-steps; the items are just indices
        return DataLoader(range(self.hparams.val_every), batch_size=None)

    def val_dataloader(self):  # the items are the validation instances' indices
        return DataLoader(range(self.hparams.val_tasks), batch_size=None)

    def setup(self, stage: str) -> None:
        self.task.to(self.device)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        if self._pending is not None:
            self._states, self._pending = restore_optimizees(self.task, self._pending), None
        horizon = self._horizon()
        if not self._states or self._states[0].step >= horizon:
            seeds = [self._next_seed() for _ in range(self.hparams.tasks_per_step)]
            self._state_seeds = [s for s in seeds for _ in range(self.estimator.particles_per_task)]
            self._states = self.estimator.start(self.lopt, [self._new_optimizee(s) for s in seeds])
            horizon = self._horizon()
        start = self._states[0].step
        k = self.truncation.length(horizon - start)
        est = self.estimator.estimate(self.lopt, self._states, k, self.truncation.weights(k, start, horizon, self.device))
        opt = self.optimizers()
        opt.zero_grad()
        max_loss = torch.stack([r.losses.abs().max() for r in est.results]).max()
        if self._any_rank(~torch.isfinite(est.meta_loss) | (max_loss > self.hparams.loss_bound)):
            return self._skip()
        self._set_grads(est)
        gnorm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in self.lopt.parameters()
                                                      if p.grad is not None]))
        if not bool(torch.isfinite(gnorm)):
            return self._skip()
        if self.hparams.grad_clip > 0:
            self.clip_gradients(opt, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")
        opt.step()
        if (scheduler := self.lr_schedulers()) is not None:  # per meta-step (manual optimization steps none)
            scheduler.step()
        self._states = [r.state for r in est.results]
        self._log_step(est, gnorm, opt.param_groups[0]["lr"])

    def _horizon(self) -> int:  # the optimizees of one meta-step share the first one's (TruncationSchedule.horizon_of)
        return self.truncation.horizon_of(self._state_seeds[0] if self._state_seeds else None, self.global_step)

    def _next_seed(self) -> int:
        """The next training instance's seed: below the validation seeds, distinct across DDP ranks."""
        world, rank = self.trainer.world_size, self.trainer.global_rank
        self._next_task += 1
        return (self.hparams.seed + (self._next_task - 1) * world + rank) % VAL_SEED_OFFSET

    def _new_optimizee(self, seed: int) -> UnrollState:
        task = self.task.sample(seed)
        self._kinds_seen |= set(task.param_kinds().values())
        return init_unroll(self.lopt, task, seed)

    def _set_grads(self, est) -> None:
        if est.grad is None:
            return self.manual_backward(est.meta_loss)
        # computed by the estimator: no backward, so no DDP all-reduce; average the ranks' estimates here
        set_flat_grad(self.lopt, est.grad if self.trainer.world_size == 1 else
                      self.trainer.strategy.reduce(est.grad, reduce_op="mean"))

    def _any_rank(self, flag: torch.Tensor) -> bool:  # one host sync; with DDP every rank takes the same branch
        return bool(self.trainer.strategy.reduce(flag.float(), reduce_op="sum") > 0 if self.trainer.world_size > 1 else flag)

    def _skip(self) -> None:
        self.optimizers().zero_grad()
        self.skipped += 1
        self._states, self._state_seeds = [], []  # fresh optimizees next step
        self.log("meta_train/skipped", float(self.skipped))

    def _log_step(self, est, gnorm: torch.Tensor, lr: float) -> None:
        self.log("meta_train/loss", est.meta_loss.detach(), prog_bar=True)
        figures = {"optimizee/loss": torch.stack([r.losses for r in est.results]).mean(0)[-1],
                   "optimizee/step": float(self._states[0].step), "meta_train/grad_norm": gnorm,
                   "lopt/update_size": torch.stack([r.update_size for r in est.results]).mean(),
                   "meta_train/lr": lr, "meta_train/skipped": float(self.skipped),
                   **{f"meta_train/{name}": value for name, value in est.logs.items()}}
        self.log_dict(figures)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        seed = VAL_SEED_OFFSET + self.hparams.val_seed + int(batch)
        task = self.task.sample(seed)
        with torch.enable_grad():
            r = train_optimizee(task, lambda groups: LearnedOptimizer(groups, lopt=self.lopt),
                                self.hparams.val_horizon or self.truncation.horizon_of(seed), seed, keep_params=True)
        # held-out loss of the trained optimizee (Task.validation_loss); a diverged run counts as very bad, never good
        val_loss = float("nan") if r.diverged else task.validation_loss(r.final, r.params, r.buffers)
        bad = r.diverged or not math.isfinite(val_loss)
        log = dict(sync_dist=True, batch_size=1)
        # meta_weight is 1 except in weighted mixtures, where selection uses the same weights as meta-training
        self.log("val/loss", 1e9 if bad else val_loss * task.meta_weight, prog_bar=True, **log)
        self.log("val/train_loss", 1e9 if bad else r.final["train_loss"], **log)
        self.log("val/diverged", float(bad), reduce_fx="sum", **log)
        if "val_accuracy" in r.final and not bad:
            self.log("val/accuracy", r.final["val_accuracy"], **log)
        if isinstance(self.task, FamilyMixture):  # which family gained or lost: its unweighted held-out loss
            self.log(f"val/loss_{self.task.family_label(seed)}", 1e9 if bad else val_loss, **log)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if bad := [n for n, p in self.lopt.named_parameters() if not bool(torch.isfinite(p).all())]:
            raise RuntimeError(f"theta has non-finite values ({', '.join(bad)}); not writing a checkpoint")
        # enough to rebuild theta's architecture without the YAML (see `python -m l2l_torch.export`)
        checkpoint["l2l"] = {"next_task": self._next_task, "skipped": self.skipped,
                             "lopt_arch": self.lopt.arch_name, "lopt_config": self.lopt.config(),
                             "describe": self.describe(), "world_size": int(self.trainer.world_size),
                             "optimizees": save_optimizees(self._state_seeds, self._states), "rng": rng_state(),
                             "estimator": self.estimator.state_dict()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        extra = checkpoint.get("l2l", {})
        self._next_task, self.skipped = int(extra.get("next_task", 0)), int(extra.get("skipped", 0))
        self._kinds_seen = set(extra.get("describe", {}).get("param_kinds", []))
        # the particles in flight continue where they were (single process only: with DDP the checkpoint holds
        # rank 0's, so every rank starts fresh ones instead), if the estimator can continue them too
        same_world = int(extra.get("world_size", 1)) == 1 and (self._trainer is None or self.trainer.world_size == 1)
        pending = extra.get("optimizees") if same_world else None
        if pending and not self.estimator.load_state_dict(extra.get("estimator", {}), self.device):
            pending = None
        self._pending, self._states = pending or None, []
        self._state_seeds = [int(d["seed"]) for d in pending] if pending else []
        if extra.get("rng") is not None and same_world:
            set_rng_state(extra["rng"])

    def describe(self) -> dict[str, Any]:
        """What this optimizer is trained on, for the exported checkpoint's metadata."""
        groups = self.trainer.optimizers[0].param_groups if self._trainer is not None and self.trainer.optimizers else []
        lr = groups[0].get("initial_lr", groups[0]["lr"]) if groups else None
        return {"task": self.task.describe(), "horizon": self.truncation.horizon, "unroll": self.truncation.unroll,
                **({"min_horizon": self.truncation.min_horizon} if self.truncation.min_horizon else {}),
                "tasks_per_step": self.hparams.tasks_per_step, "meta_lr": lr, "global_step": int(self.global_step),
                "param_kinds": sorted(self._kinds_seen), "warm_started_from": self.lopt.warm_started_from,
                "estimator": type(self.estimator).__name__}

