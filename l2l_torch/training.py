"""Train an optimizee with any ``torch.optim.Optimizer``, learned or hand-designed: the one training loop.

:func:`train_optimizee` never looks at the optimizer's type: a learned optimizer is a
:class:`l2l_torch.LearnedOptimizer`, a baseline is e.g. ``torch.optim.Adam``. Evaluation
(:mod:`l2l_torch.evaluation`), the baselines' tuning (:mod:`l2l_torch.tuning`) and meta-training's validation all
train through it, so they cannot drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from l2l_torch.tasks.base import Task

#: builds an optimizer from param groups (each has ``"params"`` and ``"kind"``)
OptimizerFactory = Callable[[list[dict[str, Any]]], torch.optim.Optimizer]


@dataclass
class RunResult:
    """One optimizee trained by one optimizer."""

    losses: Tensor  #: (steps + 1,) training loss on the batch of each step (CPU, float)
    final: dict[str, float]  #: metrics of the final params: ``train_loss``, ``val_loss``, ``test_accuracy``, ...
    diverged: bool
    epochs: list[dict[str, float]] = field(default_factory=list)  #: per-epoch validation metrics
    params: dict[str, Tensor] | None = None  #: final params (only when ``keep_params``)
    buffers: dict[str, Tensor] | None = None


def param_groups(task: Task, params: dict[str, Tensor]) -> list[dict[str, Any]]:
    """Param groups labelled by kind (``"conv"``/``"dense"``), in the task's param order."""
    kinds = task.param_kinds()
    groups: dict[str, list[Tensor]] = {}
    for n, p in params.items():
        groups.setdefault(kinds.get(n, "dense"), []).append(p)
    return [{"params": ps, "kind": k} for k, ps in groups.items()]


class UpdateRecorder:
    """Sizes of an optimizer's updates over a run: a histogram of ``log10|update|`` per coordinate
    (every step, every parameter) and the mean and median ``|update|`` of each step.

    Everything stays on the params' device until :meth:`to_dict` (no host sync per step). The edge
    bins also hold the values beyond ``[lo, hi]``; exact zeros are counted apart (``zeros``). An update
    is measured as the change of the stored params, so updates far below a param's float precision
    (``~1e-7 |p|`` in float32) show up rounded to it, or as zeros.
    """

    def __init__(self, lo: float = -10.0, hi: float = 1.0, bins: int = 110) -> None:
        self.lo, self.hi, self.bins = lo, hi, bins
        self.counts: Tensor | None = None  #: (bins + 1,) int64; the last entry counts exact zeros
        self._stats: list[Tensor] = []  #: per step: (mean |u|, median |u|)
        self._before: Tensor | None = None

    @staticmethod
    def _flat(params: dict[str, Tensor]) -> Tensor:
        return torch.cat([p.detach().reshape(-1) for p in params.values()])  # a copy

    def before(self, params: dict[str, Tensor]) -> None:
        self._before = self._flat(params)

    def after(self, params: dict[str, Tensor]) -> None:
        assert self._before is not None, "call before() first"
        u = torch.nan_to_num((self._flat(params) - self._before).abs().float(), nan=math.inf)  # NaN: top bin
        self._before = None
        idx = ((u.clamp_min(1e-30).log10() - self.lo) * (self.bins / (self.hi - self.lo))).floor()
        idx = torch.where(u == 0, self.bins, idx.clamp(0, self.bins - 1)).long()
        c = torch.bincount(idx, minlength=self.bins + 1)
        self.counts = c if self.counts is None else self.counts + c
        self._stats.append(torch.stack([u.mean(), u.median()]))

    def to_dict(self) -> dict[str, Any]:
        """``{"log10_range", "counts", "zeros", "mean_abs", "median_abs"}`` as plain lists (one host sync):
        ``counts`` has one entry per bin, the bins split ``log10_range`` evenly
        (:func:`l2l_torch.plots.histogram_edges`)."""
        counts = [0] * (self.bins + 1) if self.counts is None else self.counts.cpu().tolist()
        stats = torch.stack(self._stats).double().cpu() if self._stats else torch.zeros(0, 2)
        return {"log10_range": [self.lo, self.hi], "counts": counts[:-1],
                "zeros": counts[-1], "mean_abs": [float(f"{v:.4g}") for v in stats[:, 0].tolist()],
                "median_abs": [float(f"{v:.4g}") for v in stats[:, 1].tolist()]}


def train_optimizee(task: Task, make_optimizer: OptimizerFactory, steps: int, seed: int,
                    epoch_steps: int | None = None, loss_bound: float = 1e8,
                    keep_params: bool = False, record_updates: UpdateRecorder | None = None,
                    average: float | None = None,
                    monitor: Callable[[int, Tensor], None] | None = None) -> RunResult:
    """Train a fresh optimizee of ``task`` (initialised from ``seed``) for ``steps`` steps.

    Args:
        task: the problem.
        make_optimizer: builds the optimizer from param groups (each has ``"params"`` and ``"kind"``).
        steps: optimizer steps.
        seed: initialisation and batch-order seed; the same seed gives every optimizer the same
            initial params and the same batches.
        epoch_steps: if set, validation metrics are recorded every ``epoch_steps`` steps.
        loss_bound: a loss above this, or a non-finite one, marks the run as diverged (it stops there).
        keep_params: keep the final params and buffers in the result.
        record_updates: if given, every step's update (params after minus before) goes into it.
        average: if set, an exponential moving average of the iterates with this decay (torch's
            :func:`~torch.optim.swa_utils.get_ema_multi_avg_fn`: ``avg <- decay * avg + (1 - decay) * params``
            after every step, starting from the initial params) is what the final metrics, the per-epoch metrics
            and ``params`` are taken at; the training losses stay those of the iterates. Buffers are the last
            iterate's. Works the same for every optimizer, learned or not.
        monitor: if given, called as ``monitor(t, losses)`` at every divergence check after the first step (every
            25 steps and at the end), where ``losses`` is the ``(steps + 1,)`` tensor of batch losses so far (NaN
            beyond ``t``); it may raise to stop the run (:func:`l2l_torch.tuning.tune_adamw` prunes so).

    Returns:
        A :class:`RunResult`. A diverged run has ``diverged=True`` and NaN final metrics, never
        a number that looks fine.
    """
    init, buffers = task.init_params(seed)
    params = {k: v.clone().requires_grad_() for k, v in init.items()}
    opt = make_optimizer(param_groups(task, params))
    ema_update = None if average is None else torch.optim.swa_utils.get_ema_multi_avg_fn(average)
    evaluated = params if ema_update is None else {k: v.detach().clone() for k, v in params.items()}  # metrics' params
    gen = torch.Generator(device=task.device).manual_seed(seed)
    losses = torch.full((steps + 1,), float("nan"), device=task.device)
    epochs: list[dict[str, float]] = []
    diverged = False
    check_every = 25
    for t in range(steps + 1):
        loss, new_buffers = task.loss(params, buffers, task.sample_batch("train", gen))
        losses[t] = loss.detach()
        if t % check_every == 0 or t == steps:  # one host sync every few steps, not per step
            bad = ~torch.isfinite(losses[: t + 1]) | (losses[: t + 1].abs() > loss_bound)
            if bool(bad.any()):
                diverged = True
                break
            if monitor is not None and t > 0:
                monitor(t, losses)
        if t == steps:
            break
        buffers = {k: v.detach() for k, v in new_buffers.items()}
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if record_updates is not None:
            record_updates.before(params)
        opt.step()
        if record_updates is not None:
            record_updates.after(params)
        if ema_update is not None:
            ema_update(list(evaluated.values()), [p.detach() for p in params.values()], t)
        if epoch_steps and (t + 1) % epoch_steps == 0:
            epochs.append({"step": t + 1,
                           **{f"val_{k}": v for k, v in task.evaluate(evaluated, buffers, "val").items()}})
    final: dict[str, float] = {}
    if not diverged:
        for split in task.eval_splits:
            for k, v in task.evaluate(evaluated, buffers, split).items():
                final[f"{split}_{k}"] = v
        diverged = not all(math.isfinite(v) for v in final.values())
    if diverged:
        final = {k: float("nan") for k in final}
        final.setdefault("train_loss", float("nan"))
    return RunResult(losses.cpu(), final, diverged, epochs,
                     {k: v.detach() for k, v in evaluated.items()} if keep_params else None,
                     buffers if keep_params else None)
