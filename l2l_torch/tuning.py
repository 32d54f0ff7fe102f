"""``adamw_tuned``: AdamW with its whole recipe tuned, the strong baseline of ``evaluate.py``.

The lr-only baselines (``adam_tuned``, ...) tune one number on a grid. A learned optimizer gets more than that:
learned per-tensor step sizes, a schedule, a warm-up. :func:`tune_adamw` gives AdamW the same room: learning rate,
``beta1``, ``beta2``, decoupled weight decay, a linear warm-up (a fraction of the run) and a constant or cosine
schedule after it, searched jointly with Optuna's TPE sampler under a fixed trial budget, with successive halving
(:class:`optuna.pruners.SuccessiveHalvingPruner`) stopping trials whose smoothed training loss falls behind. Every
tuning run is on instances ``TUNE_SEED_OFFSET + i``, never on the held-out seeds of the evaluation, and the tuning
reports what it cost in optimizee steps.

The tuned recipe is plain torch: :class:`ScheduledAdamW` is :class:`torch.optim.AdamW` stepping torch's own
:class:`~torch.optim.lr_scheduler.LinearLR` (warm-up) and
:class:`~torch.optim.lr_scheduler.CosineAnnealingLR` (decay), chained by
:class:`~torch.optim.lr_scheduler.SequentialLR`. To reproduce it in your own loop::

    opt = torch.optim.AdamW(model.parameters(), lr=h["lr"], betas=(h["beta1"], h["beta2"]),
                            weight_decay=h["weight_decay"])
    # then the same LinearLR / CosineAnnealingLR, stepped once per optimizer step

Example:
    >>> from l2l_torch.tuning import ScheduledAdamW
    >>> import torch
    >>> w = torch.nn.Parameter(torch.ones(3))
    >>> opt = ScheduledAdamW([w], total_steps=10, lr=0.1, warmup=0.2, schedule="cosine")
    >>> [round(g["lr"], 4) for g in opt.param_groups]  # step 1 of a 2-step warm-up: half the peak
    [0.05]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

#: the hyperparameters of ``adamw_tuned`` and their search ranges: learning rate (log), ``1 - beta1`` and
#: ``1 - beta2`` (log, so that 0.9 / 0.99 / 0.999 are equally easy to reach), decoupled weight decay (log), the
#: warm-up as a fraction of the run, and the schedule after the warm-up
SEARCH_SPACE: dict[str, tuple] = {
    "lr": ("log", 1e-5, 1.0),
    "one_minus_beta1": ("log", 1e-2, 0.5),
    "one_minus_beta2": ("log", 1e-4, 0.1),
    "weight_decay": ("log", 1e-6, 1.0),
    "warmup": ("uniform", 0.0, 0.25),
    "schedule": ("categorical", ("constant", "cosine")),
}
#: the first trial of every search: torch's AdamW defaults, so the search can only improve on them
DEFAULT_TRIAL: dict[str, Any] = {"lr": 1e-3, "one_minus_beta1": 0.1, "one_minus_beta2": 1e-3, "weight_decay": 1e-2,
                                 "warmup": 0.0, "schedule": "constant"}
#: trials of the search unless ``evaluate.py --tune-trials`` says otherwise
DEFAULT_TRIALS = 100


class ScheduledAdamW(torch.optim.AdamW):
    """:class:`torch.optim.AdamW` with a linear warm-up over ``W = round(warmup * total_steps)`` steps, then a constant
    learning rate or a cosine decay; the schedule is torch's own and steps with the optimizer. The learning rate of
    step ``t`` (from 1) is ``lr * t / W`` for ``t <= W``, then ``lr`` (constant) or
    ``lr * (1 + cos(pi * (t - W - 1) / (total_steps - W))) / 2`` (cosine: the peak at step ``W + 1``, near 0 at the
    last step).

    Args:
        params: parameters or param groups.
        total_steps: the optimizer steps of the run (the cosine reaches 0 there).
        lr: the peak learning rate.
        beta1, beta2: AdamW's ``betas``.
        weight_decay: decoupled weight decay (AdamW's).
        warmup: fraction of ``total_steps`` in ``[0, 1)`` over which the learning rate rises linearly: at step
            ``t`` (from 1) of a ``W``-step warm-up it is ``lr * t / W``.
        schedule: ``"constant"`` or ``"cosine"`` after the warm-up.
    """

    def __init__(self, params, total_steps: int, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 weight_decay: float = 1e-2, warmup: float = 0.0, schedule: str = "constant") -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        if not 0.0 <= warmup < 1.0:
            raise ValueError(f"warmup is a fraction of the run in [0, 1), got {warmup}")
        if schedule not in ("constant", "cosine"):
            raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
        super().__init__(params, lr=lr, betas=(beta1, beta2), weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler
        warm = round(warmup * total_steps)
        after = (sched.CosineAnnealingLR(self, T_max=max(1, total_steps - warm)) if schedule == "cosine"
                 else sched.ConstantLR(self, factor=1.0, total_iters=0))
        if warm > 0:
            ramp = sched.LinearLR(self, start_factor=1.0 / warm, end_factor=1.0, total_iters=warm - 1)
            self.scheduler = sched.SequentialLR(self, [ramp, after], milestones=[warm])
        else:
            self.scheduler = after

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        self.scheduler.step()
        return loss


def hparams_from_trial(params: dict[str, Any]) -> dict[str, Any]:
    """The AdamW hyperparameters (``lr``, ``beta1``, ``beta2``, ``weight_decay``, ``warmup``, ``schedule``) of one
    point of :data:`SEARCH_SPACE`."""
    return {"lr": params["lr"], "beta1": 1.0 - params["one_minus_beta1"], "beta2": 1.0 - params["one_minus_beta2"],
            "weight_decay": params["weight_decay"], "warmup": params["warmup"], "schedule": params["schedule"]}


def adamw_factory(hparams: dict[str, Any], steps: int) -> Callable[[list[dict[str, Any]]], torch.optim.Optimizer]:
    """Factory (param groups -> optimizer) of :class:`ScheduledAdamW` with ``hparams`` for a ``steps``-step run."""
    return lambda groups: ScheduledAdamW(groups, total_steps=steps, **hparams)


def _suggest(trial, space: dict[str, tuple]) -> dict[str, Any]:
    out = {}
    for name, (kind, *args) in space.items():
        if kind == "log":
            out[name] = trial.suggest_float(name, args[0], args[1], log=True)
        elif kind == "uniform":
            out[name] = trial.suggest_float(name, args[0], args[1])
        else:
            out[name] = trial.suggest_categorical(name, list(args[0]))
    return out


def tune_adamw(family, steps: int, trials: int = DEFAULT_TRIALS, seeds: int = 3, metric: str = "train_loss",
               average: float | None = None, seed: int = 0,
               progress: Callable[[str], None] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Search AdamW's recipe on the tuning instances of ``family`` (Optuna TPE, successive-halving pruning).

    A trial trains ``seeds`` instances ``TUNE_SEED_OFFSET + i`` for ``steps`` steps each, one after another, and
    scores the mean final ``metric`` (a diverged run scores +inf). While it runs it reports its smoothed training
    loss (the mean of the last 25 batch losses) at every check of :func:`~l2l_torch.training.train_optimizee`, at
    step ``i * steps + t``, so that all trials are compared on the same instance at the same step; the pruner
    (rungs at ``steps / 4`` times powers of 3) stops the trials that fall behind.

    Args:
        family: the task family (:class:`~l2l_torch.tasks.base.TaskFamily`).
        steps: optimizee steps per run (the schedule spans them).
        trials: the trial budget (pruned trials count).
        seeds: tuning instances per trial.
        metric: the final metric minimised (``train_loss``, or e.g. ``val_loss``).
        average: tune at an average of the iterates (:func:`~l2l_torch.training.train_optimizee`).
        seed: the sampler's seed (the search is deterministic given it).
        progress: called with one line per trial.

    Returns:
        ``(hparams, record)``: the best trial's :func:`hparams_from_trial`, and a JSON-able record with its
        ``score``, the ``seeds`` used, the ``cost`` (``{"trials", "completed", "pruned", "optimizee_steps"}``) and
        every trial (``{"number", "state", "value", "params"}``).
    """
    import optuna

    from l2l_torch.tasks.base import TUNE_SEED_OFFSET
    from l2l_torch.training import train_optimizee

    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, steps // 4), reduction_factor=3))
    study.enqueue_trial(DEFAULT_TRIAL)
    tune_seeds = [TUNE_SEED_OFFSET + i for i in range(seeds)]
    spent = {"steps": 0}

    def objective(trial) -> float:
        hp = hparams_from_trial(_suggest(trial, SEARCH_SPACE))
        finals = []
        for i, s in enumerate(tune_seeds):
            reached = 0  # optimizee steps this run has taken

            def monitor(t: int, losses: torch.Tensor, i: int = i) -> None:
                nonlocal reached
                reached = t
                trial.report(float(losses[max(0, t - 24): t + 1].mean()), i * steps + t)
                if trial.should_prune():
                    raise optuna.TrialPruned()

            try:
                r = train_optimizee(family.sample(s), adamw_factory(hp, steps), steps, s, average=average,
                                    monitor=monitor)
                reached = reached if r.diverged else steps
            finally:
                spent["steps"] += reached
            if r.diverged:
                return math.inf
            finals.append(r.final[metric])
        return sum(finals) / len(finals)

    def log(study, trial) -> None:
        if progress:
            value = "pruned" if trial.state.name == "PRUNED" else f"{metric} {trial.value:.4g}"
            progress(f"tuning adamw: trial {trial.number + 1}/{trials} -> {value}  [{spent['steps']} optimizee steps]")

    study.optimize(objective, n_trials=trials, callbacks=[log])
    done = [t for t in study.trials if t.state.name == "COMPLETE" and math.isfinite(t.value)]
    if not done:
        raise RuntimeError(f"adamw_tuned: none of {trials} trials finished without diverging")
    best = min(done, key=lambda t: t.value)
    states = [t.state.name for t in study.trials]
    record = {"score": best.value, "metric": metric, "seeds": tune_seeds, "steps": steps, "sampler_seed": seed,
              "cost": {"trials": len(study.trials), "completed": states.count("COMPLETE"),
                       "pruned": states.count("PRUNED"), "optimizee_steps": spent["steps"]},
              "trials": [{"number": t.number, "state": t.state.name.lower(), "value": t.value, "params": t.params}
                         for t in study.trials]}
    return hparams_from_trial(best.params), record
