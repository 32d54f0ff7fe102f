"""Meta-training as a LightningModule: orchestration only.

The pieces live elsewhere: the optimizer network in :mod:`l2l_torch.learned_optimizers`, the
truncated unroll in :mod:`l2l_torch.unroll`, the problems in :mod:`l2l_torch.tasks` and
``tasks/``. One ``training_step`` is one truncation of ``unroll`` optimizee steps followed by
one update of ``theta``; a new optimizee is sampled every ``horizon`` optimizee steps.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch.nn.utils import parameters_to_vector
from torch.utils.data import DataLoader

from l2l_torch.estimators import antithetic_pair, pes_estimate
from l2l_torch.evaluation import train_optimizee
from l2l_torch.learned_optimizers import LearnedOptimizerBase
from l2l_torch.optim import LearnedOptimizer
from l2l_torch.tasks.base import TEST_SEED_OFFSET, VAL_SEED_OFFSET, TaskFamily
from l2l_torch.tasks.family_mixture import FamilyMixture
from l2l_torch.unroll import UnrollState, batched_unroll, init_unroll, linear_loss_weights, truncated_unroll


class MetaModule(L.LightningModule):
    """Meta-train a learned optimizer on a task family with truncated BPTT (or PES, ``estimator``).

    Args:
        task: the task family optimizees are drawn from.
        lopt: the learned optimizer (its parameters are ``theta``).
        horizon: optimizee steps before a fresh optimizee is sampled (T).
        unroll: optimizee steps per truncation, i.e. per meta-update (K); when it does not divide the
            horizon, the last truncation of each optimizee is shorter.
        tasks_per_step: optimizees unrolled in parallel per meta-update (meta-batch).
        batch_tasks: step the ``tasks_per_step`` optimizees with ONE learned-optimizer call over all their
            coordinates (:func:`l2l_torch.unroll.batched_unroll`; same numbers as one by one, tested)
            instead of one unroll per optimizee. Used only if the optimizer's ``tasks_batchable`` allows
            it. Off by default: on a CPU the LSTM's work per coordinate is the same either way, so batching
            saves only per-call overhead and synchronisation, and its measured gain on the shared 2-core
            machine was small and noisy (``benchmarks/results/meta_throughput.json``); on GPUs, where
            per-kernel overhead dominates for small optimizees, it is the better setting.
        meta_optimizer: ``"adam"`` or ``"rmsprop"``.
        meta_lr: learning rate of the meta-optimizer.
        meta_lr_decay: meta-steps over which ``meta_lr`` decays to 0 on a half cosine,
            ``meta_lr * (1 + cos(pi * min(step, D) / D)) / 2`` (0, the default: constant). A noisy meta-gradient
            (PES) leaves theta wandering around an optimum at a constant rate; the decay lets it settle.
        weight_decay: L2 weight decay on ``theta`` (the study's LSTM weight regularisation).
        grad_clip: max global norm of the meta-gradient (0 disables clipping).
        second_order: keep second derivatives through the optimizee gradients.
        loss_weights: the ``w_t`` of the meta-loss ``mean_t w_t f(x_t)`` over a truncation, one per step
            (``unroll`` values); ``None`` means ``w_t = 1``; ``"linear"`` is the ramp
            ``w_t = 2 (t + 1) / (unroll + 1)`` (mean 1), which weights the end of a truncation most. A
            shorter truncation (the last of a horizon, or with ``min_unroll``) uses the first weights.
            ``"horizon_linear"`` weights the step ``s`` of the whole horizon (``s = 1 ... T``, counted across
            truncations) by ``2 s / (T + 1)`` (mean 1 over the horizon), so the meta-loss favours the end of the
            optimizee's training rather than the end of each truncation.
        loss_bound: a truncation whose optimizee loss exceeds this (or is not finite) is dropped.
        val_every: meta-updates between validations (one Lightning "epoch").
        val_tasks: held-out task instances used for validation.
        val_horizon: optimizee steps in validation (defaults to ``horizon``).
        val_seed: validation uses the instances of seeds ``VAL_SEED_OFFSET + val_seed + i``. A fine-tune
            should validate on other instances than those its warm start was selected on (0, 1, ... by
            default): a checkpoint picked as the best of many on some instances scores luckily well on them,
            so a fine-tune would look worse there even when it is not.
        seed: base seed of the training task instances.
        min_unroll: if set, each truncation's length is drawn log-uniformly from ``[min_unroll, unroll]``
            (varied truncations; ``None`` keeps every truncation at ``unroll`` steps).
        horizon_curriculum: meta-updates over which the horizon grows linearly from ``unroll`` to
            ``horizon`` (short optimizee runs first); 0 disables the curriculum.
        estimator: ``"bptt"`` (truncated backpropagation through the unroll, the paper's) or ``"pes"``
            (Persistent Evolution Strategies, :mod:`l2l_torch.estimators`: unbiased over the whole horizon,
            no backward through the unroll; each of the ``tasks_per_step`` optimizees is run by an
            antithetic pair of particles, and the estimate's variance is logged as ``meta_train/pes_var``).
        pes_sigma: standard deviation of PES's perturbations of ``theta``.
    """

    def __init__(self, task: TaskFamily, lopt: LearnedOptimizerBase, horizon: int = 100, unroll: int = 20,
                 tasks_per_step: int = 1, batch_tasks: bool = False, meta_optimizer: str = "adam", meta_lr: float = 1e-3,
                 weight_decay: float = 0.0, grad_clip: float = 1.0, second_order: bool = False,
                 loss_weights: list[float] | str | None = None, loss_bound: float = 1e6, val_every: int = 50,
                 val_tasks: int = 8,
                 val_horizon: int | None = None, val_seed: int = 0, seed: int = 0, min_unroll: int | None = None,
                 horizon_curriculum: int = 0, estimator: str = "bptt", pes_sigma: float = 0.01,
                 meta_lr_decay: int = 0) -> None:
        super().__init__()
        if horizon < 1 or not 1 <= unroll <= horizon:
            # a horizon that is not a multiple of unroll ends with a shorter truncation (100 = 30+30+30+10)
            raise ValueError(f"unroll ({unroll}) must be in [1, horizon={horizon}]")
        self._horizon_weights = loss_weights == "horizon_linear"
        if self._horizon_weights:
            loss_weights = None  # computed per truncation from the optimizee's step (training_step)
        elif loss_weights == "linear":
            loss_weights = linear_loss_weights(unroll)
        elif isinstance(loss_weights, str):
            raise ValueError(f"loss_weights must be a list of {unroll} numbers, 'linear', 'horizon_linear' or None, "
                             f"got {loss_weights!r}")
        if loss_weights is not None and len(loss_weights) != unroll:
            raise ValueError(f"loss_weights needs one weight per unrolled step ({unroll}), got {len(loss_weights)}")
        if min_unroll is not None and not 1 <= min_unroll <= unroll:
            raise ValueError(f"min_unroll must be in [1, unroll={unroll}], got {min_unroll}")
        if not 0 <= val_seed <= TEST_SEED_OFFSET - VAL_SEED_OFFSET - val_tasks:
            raise ValueError(f"val_seed must be in [0, {TEST_SEED_OFFSET - VAL_SEED_OFFSET - val_tasks}] (validation "
                             f"seeds stay below the evaluation seeds), got {val_seed}")
        if estimator not in ("bptt", "pes"):
            raise ValueError(f"estimator must be 'bptt' or 'pes', got {estimator!r}")
        if estimator == "pes" and (second_order or pes_sigma <= 0):
            raise ValueError("estimator='pes' needs pes_sigma > 0 and no second_order (it uses no gradients)")
        if meta_lr_decay < 0:
            raise ValueError(f"meta_lr_decay must be >= 0 meta-steps, got {meta_lr_decay}")
        if meta_optimizer not in ("adam", "rmsprop"):
            raise ValueError(f"meta_optimizer must be 'adam' or 'rmsprop', got {meta_optimizer!r}")
        self.save_hyperparameters(ignore=["task", "lopt"])
        self.automatic_optimization = False
        self.task, self.lopt = task, lopt
        self._loss_weights = None if loss_weights is None else [float(w) for w in loss_weights]
        self._states: list[UnrollState] = []
        self._state_seeds: list[int] = []  # task seed of each optimizee in _states (to checkpoint them)
        self._pending: list[dict[str, Any]] | None = None  # optimizees read from a checkpoint, rebuilt lazily
        self._next_task = 0  # counter of training task instances (checkpointed)
        self._kinds_seen: set[str] = set()  # param kinds (conv/dense) meta-trained on, for the checkpoint
        self.skipped = 0  # truncations dropped for non-finite or exploding values (checkpointed)
        self._xi: list[torch.Tensor] = []  # PES: accumulated perturbation per pair of particles (checkpointed)

    # ---------------------------------------------------------------- Lightning plumbing
    def configure_optimizers(self):
        cls = torch.optim.Adam if self.hparams.meta_optimizer == "adam" else torch.optim.RMSprop
        return cls(self.lopt.parameters(), lr=self.hparams.meta_lr, weight_decay=self.hparams.weight_decay)

    def train_dataloader(self):
        # an "epoch" is val_every meta-updates; the items are just indices
        return DataLoader(range(self.hparams.val_every), batch_size=None)

    def val_dataloader(self):
        return DataLoader(range(self.hparams.val_tasks), batch_size=None)

    def setup(self, stage: str) -> None:
        self.task.to(self.device)

    def on_fit_start(self) -> None:
        self.task.to(self.device)

    # ---------------------------------------------------------------- training
    def _new_optimizee(self) -> UnrollState:
        world, rank = self.trainer.world_size, self.trainer.global_rank
        seed = (self.hparams.seed + self._next_task * world + rank) % VAL_SEED_OFFSET
        self._next_task += 1
        self._state_seeds.append(seed)
        task = self.task.sample(seed)
        self._kinds_seen |= set(task.param_kinds().values())
        return init_unroll(self.lopt, task, seed)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        hp = self.hparams
        pes = hp.get("estimator", "bptt") == "pes"
        if self._pending is not None:
            self._restore_optimizees()
        horizon = self._current_horizon()
        if not self._states or self._states[0].step >= horizon:
            self._state_seeds = []
            self._states = [self._new_optimizee() for _ in range(hp.tasks_per_step)]
            if pes:  # each optimizee is run by an antithetic pair of particles
                self._states = [p for s in self._states for p in antithetic_pair(s)]
                self._state_seeds = [seed for seed in self._state_seeds for _ in range(2)]
                zeros = torch.zeros_like(parameters_to_vector(self.lopt.parameters()).detach())
                self._xi = [zeros] * hp.tasks_per_step
        k = self._truncation_length(horizon - self._states[0].step)
        if self._horizon_weights:  # steps s = start+1 ... start+k of the horizon, weight 2 s / (T + 1)
            s = torch.arange(1, k + 1, device=self.device, dtype=torch.float32) + self._states[0].step
            weights = 2.0 * s / (horizon + 1)
        else:
            weights = None if self._loss_weights is None else torch.tensor(self._loss_weights[:k], device=self.device)
        if pes:
            est = pes_estimate(self.lopt, list(zip(self._states[0::2], self._states[1::2])), self._xi, k,
                               hp.pes_sigma, weights)
            results = est.results  # their meta-losses carry no graph: the gradient is est.grad
        elif hp.batch_tasks and len(self._states) > 1 and self.lopt.tasks_batchable:
            results = batched_unroll(self.lopt, self._states, k, weights, hp.second_order)
        else:
            results = [truncated_unroll(self.lopt, s, k, weights, hp.second_order) for s in self._states]
        meta_loss = torch.stack([r.meta_loss for r in results]).mean()
        max_loss = torch.stack([r.losses.abs().max() for r in results]).max()
        opt = self.optimizers()
        opt.zero_grad()
        # one host sync per truncation: drop it if anything went non-finite or exploded
        bad = ~torch.isfinite(meta_loss) | (max_loss > hp.loss_bound)
        if self.trainer.world_size > 1:
            # every rank must take the same branch, or the others wait forever in DDP's all-reduce
            bad = self.trainer.strategy.reduce(bad.float(), reduce_op="sum") > 0
        if bool(bad):
            return self._skip("loss")
        if pes:
            grad = est.grad
            if self.trainer.world_size > 1:  # no backward, so no DDP all-reduce: average the estimates here
                grad = self.trainer.strategy.reduce(grad, reduce_op="mean")
            params = list(self.lopt.parameters())
            for p, g in zip(params, grad.split([p.numel() for p in params])):
                p.grad = g.view_as(p).clone()
        else:
            self.manual_backward(meta_loss)
        grads = [p.grad for p in self.lopt.parameters() if p.grad is not None]
        gnorm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        if not bool(torch.isfinite(gnorm)):
            opt.zero_grad()
            return self._skip("grad")
        if hp.grad_clip > 0:
            self.clip_gradients(opt, gradient_clip_val=hp.grad_clip, gradient_clip_algorithm="norm")
        if hp.get("meta_lr_decay"):  # from the step count, so a resumed run continues the same schedule
            for group in opt.param_groups:
                group["lr"] = self.meta_lr_at(self.global_step)
            self.log("meta_train/lr", opt.param_groups[0]["lr"])
        opt.step()
        self._states = [r.state for r in results]
        if pes:
            self._xi = est.xi
            self.log("meta_train/pes_var", est.variance)
        losses = torch.stack([r.losses for r in results]).mean(0)
        self.log("meta_train/loss", meta_loss.detach(), prog_bar=True)
        self.log("optimizee/loss", losses[-1])
        self.log("optimizee/step", float(self._states[0].step))
        self.log("lopt/update_size", torch.stack([r.update_size for r in results]).mean())
        self.log("meta_train/grad_norm", gnorm)
        self.log("meta_train/skipped", float(self.skipped))

    def meta_lr_at(self, step: int) -> float:
        """The meta-learning rate of meta-step ``step`` (see ``meta_lr_decay``)."""
        hp, decay = self.hparams, self.hparams.get("meta_lr_decay", 0)
        if not decay:
            return hp.meta_lr
        return hp.meta_lr * 0.5 * (1.0 + math.cos(math.pi * min(step, decay) / decay))

    def _current_horizon(self) -> int:
        """The horizon now: ``horizon``, or less early in a horizon curriculum."""
        hp = self.hparams
        if not hp.get("horizon_curriculum"):
            return hp.horizon
        frac = min(1.0, self.global_step / hp.horizon_curriculum)
        return int(round(hp.unroll + frac * (hp.horizon - hp.unroll)))

    def _truncation_length(self, remaining: int) -> int:
        """Steps in this truncation: ``unroll``, or log-uniform in ``[min_unroll, unroll]``; never past the
        horizon (``remaining`` steps left)."""
        hp = self.hparams
        k = hp.unroll
        if hp.get("min_unroll") is not None and hp.min_unroll < hp.unroll:
            # torch's global RNG: checkpointed with the run, so a resumed run draws the same lengths
            u = float(torch.empty(()).uniform_(math.log(hp.min_unroll), math.log(hp.unroll + 1)))
            k = min(hp.unroll, int(math.exp(u)))
        return max(1, min(k, remaining))

    def _skip(self, why: str) -> None:
        self.skipped += 1
        self._states, self._state_seeds = [], []  # reset the optimizee: a fresh one next step
        self.log("meta_train/skipped", float(self.skipped))

    # ---------------------------------------------------------------- validation
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        seed = VAL_SEED_OFFSET + self.hparams.get("val_seed", 0) + int(batch)
        steps = self.hparams.val_horizon or self.hparams.horizon
        task = self.task.sample(seed)
        with torch.enable_grad():
            r = train_optimizee(task, lambda groups: LearnedOptimizer(groups, lopt=self.lopt), steps, seed,
                                keep_params=True)
        # held-out loss of the trained optimizee (Task.validation_loss: its val split's loss by default)
        val_loss = float("nan") if r.diverged else task.validation_loss(r.final, r.params, r.buffers)
        # diverged validation runs count as a very bad loss, never as a good one
        bad = r.diverged or not math.isfinite(val_loss)
        # meta_weight is 1 except in weighted mixtures, where selection uses the same weights as meta-training
        self.log("val/loss", 1e9 if bad else val_loss * task.meta_weight, prog_bar=True, sync_dist=True, batch_size=1)
        self.log("val/train_loss", 1e9 if bad else r.final["train_loss"], sync_dist=True, batch_size=1)
        self.log("val/diverged", float(bad), sync_dist=True, batch_size=1, reduce_fx="sum")
        if "val_accuracy" in r.final and not bad:
            self.log("val/accuracy", r.final["val_accuracy"], sync_dist=True, batch_size=1)
        if isinstance(self.task, FamilyMixture):  # which family gained or lost: its unweighted held-out loss
            i = self.task.family_index(seed)
            self.log(f"val/loss_{i}_{self.task.families[i].name}", 1e9 if bad else val_loss,
                     sync_dist=True, batch_size=1)

    # ---------------------------------------------------------------- checkpoint extras
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # enough to rebuild theta's architecture without the YAML (see `python -m l2l_torch.export`)
        for name, p in self.lopt.named_parameters():
            if not bool(torch.isfinite(p).all()):  # never write a checkpoint with NaN/Inf theta
                raise RuntimeError(f"theta has non-finite values ({name}); not writing a checkpoint")
        checkpoint["l2l"] = {"next_task": self._next_task, "skipped": self.skipped,
                             "lopt_arch": self.lopt.arch_name, "lopt_config": self.lopt.config(),
                             "describe": self.describe(), "world_size": int(self.trainer.world_size),
                             "optimizees": self._optimizee_states(), "rng": _rng_state(),
                             "pes_xi": [x.detach().cpu() for x in self._xi]}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        extra = checkpoint.get("l2l", {})
        self._next_task = int(extra.get("next_task", 0))
        self.skipped = int(extra.get("skipped", 0))
        self._kinds_seen = set(extra.get("describe", {}).get("param_kinds", []))
        # the optimizees in flight continue where they were (single process only: with DDP the
        # checkpoint holds rank 0's optimizees, so every rank starts fresh ones instead)
        same_world = int(extra.get("world_size", 1)) == 1 and self._world_size() == 1
        self._pending = extra.get("optimizees") if same_world else None
        self._xi = [x.to(self.device) for x in extra.get("pes_xi", [])]
        if self.hparams.get("estimator", "bptt") == "pes" and len(self._xi) * 2 != len(self._pending or []):
            self._pending, self._xi = None, []  # PES particles without their perturbations: start fresh ones
        self._states, self._state_seeds = [], []
        if extra.get("rng") is not None and same_world:
            _set_rng_state(extra["rng"])

    def _world_size(self) -> int:
        return int(self.trainer.world_size) if self._trainer is not None else 1

    def _optimizee_states(self) -> list[dict[str, Any]]:
        """The optimizees in flight (params, buffers, optimizer state, step, batch RNG), on the CPU."""
        if len(self._state_seeds) != len(self._states):
            return []
        return [{"seed": seed, "step": s.step, "params": _to(s.params, "cpu"), "buffers": _to(s.buffers, "cpu"),
                 "lopt_state": _to(s.lopt_state, "cpu"), "generator": s.generator.get_state()}
                for seed, s in zip(self._state_seeds, self._states)]

    def _restore_optimizees(self) -> None:
        saved, self._pending = self._pending or [], None
        states = []
        for d in saved:
            task = self.task.sample(int(d["seed"]))
            gen = torch.Generator(device=task.device)
            gen.set_state(d["generator"])
            states.append(UnrollState(task, _to(d["params"], task.device), _to(d["buffers"], task.device),
                                      _to(d["lopt_state"], task.device), int(d["step"]), gen))
        self._states, self._state_seeds = states, [int(d["seed"]) for d in saved]

    def describe(self) -> dict[str, Any]:
        """What this optimizer is trained on, for the exported checkpoint's metadata."""
        hp = self.hparams
        return {"task": self.task.describe(), "horizon": hp.horizon, "unroll": hp.unroll,
                "tasks_per_step": hp.tasks_per_step, "meta_lr": hp.meta_lr, "global_step": int(self.global_step),
                "param_kinds": sorted(self._kinds_seen), "warm_started_from": self.lopt.warm_started_from}


def _to(obj: Any, device: str | torch.device) -> Any:
    """``obj`` (nested dicts/lists/tuples of tensors) with every tensor detached and on ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to(device)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to(v, device) for v in obj)
    return obj


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
