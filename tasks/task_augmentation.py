"""Task augmentation: the same problem shown to the optimizer at random scales, so that it must read scales from its
inputs instead of memorising them (the idea of Metz et al. 2022, "Practical tradeoffs between memory, compute, and
performance in learned optimizers", task augmentation).

:class:`AugmentedFamily` wraps any task family; per instance, deterministically in the seed, it draws:

* an **input presentation** (image tasks): the standardised inputs as they are, the raw pixels in ``[0, 1]``
  (``x * std + mean``, undoing the dataset's standardisation), or the standardised inputs times a log-uniform
  factor. The network computes on these inputs, so this is a different problem with the same data: the first
  layer's gradients change scale.
* a **loss scale** ``c``: the training loss is ``c * f``. The minimisers are those of ``f``; the gradients are ``c``
  times larger. Evaluation reports the plain ``f``.
* a **parameter reparametrisation**, one log-uniform factor ``s`` per parameter tensor: the optimizer holds
  ``q = p / s`` and the network computes with ``p = s * q``. At matched parameters the loss is the same function;
  the optimizer sees parameters ``1/s`` and gradients ``s`` times the original ones.

The input presentation is a forward pre-hook on the instance's own network (a fresh one per instance in every family
here), so the task's own evaluation and metrics see the same inputs as training.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from l2l_torch.data import TensorDataModule
from l2l_torch.tasks.base import Batch, Buffers, Params, Task, TaskFamily

INPUT_MODES = ("standardized", "raw", "scaled")


class InputAffine:
    """A forward pre-hook ``x -> x * scale + shift`` on a module's first input, per channel (dim 1).

    Args:
        scale, shift: one number, or one per channel.

    The constants are made once per device and dtype (no host-to-device copy per batch).
    """

    def __init__(self, scale: float | tuple[float, ...], shift: float | tuple[float, ...] = 0.0) -> None:
        self.scale, self.shift = scale, shift
        self._cache: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor]] = {}

    def constants(self, x: Tensor) -> tuple[Tensor, Tensor]:
        key = (x.device, x.dtype)
        if key not in self._cache:
            shape = (1, -1) + (1,) * (x.dim() - 2)
            self._cache[key] = tuple(torch.as_tensor(v, dtype=x.dtype).reshape(shape).to(x.device)
                                     for v in (self.scale, self.shift))
        return self._cache[key]

    def __call__(self, module: torch.nn.Module, args: tuple) -> tuple:
        scale, shift = self.constants(args[0])
        return (args[0] * scale + shift, *args[1:])


class AugmentedTask(Task):
    """``task`` with its loss scaled by ``loss_scale`` and its parameters stored divided by ``param_scales``.

    Args:
        task: the task to wrap (its network already carries any input hook).
        param_scales: ``{name: s}`` for every parameter: the optimizer holds ``q = p / s``.
        loss_scale: the training loss is ``loss_scale * task.loss``.
        augmentation: what was drawn, for :meth:`describe`.

    Every method works on the optimizer's parameters ``q`` and hands ``p = s * q`` to ``task``; the batches, metrics
    and parameter kinds are ``task``'s.
    """

    def __init__(self, task: Task, param_scales: Mapping[str, float], loss_scale: float = 1.0,
                 augmentation: Mapping[str, Any] | None = None) -> None:
        super().__init__(task.seed)
        self.task, self.module, self.device = task, task.module, task.device
        self.param_scales, self.loss_scale = dict(param_scales), float(loss_scale)
        self.augmentation = dict(augmentation or {})
        self.has_accuracy, self.eval_splits, self.meta_weight = task.has_accuracy, task.eval_splits, task.meta_weight
        if hasattr(task, "visualize"):  # (callbacks and evaluate.py look for it)
            self.visualize = lambda params, buffers, *a, **k: task.visualize(self.original(params), buffers, *a, **k)

    def original(self, params: Mapping[str, Tensor]) -> Params:
        """The wrapped task's parameters ``p = s * q`` of the optimizer's ``q``."""
        return {k: v * self.param_scales[k] for k, v in params.items()}

    def meta_factor(self) -> float:
        """``meta_weight`` over both loss scales: this one and the wrapped task's own."""
        return self.meta_weight / (self.loss_scale * self.task.loss_scale)

    def init_params(self, seed: int | None = None) -> tuple[Params, Buffers]:
        params, buffers = self.task.init_params(seed)
        return {k: v / self.param_scales[k] for k, v in params.items()}, buffers

    def param_kinds(self) -> dict[str, str]:
        return self.task.param_kinds()

    def sample_batch(self, split: str, generator: torch.Generator) -> Batch:
        return self.task.sample_batch(split, generator)

    def full_batches(self, split: str) -> list[Batch]:
        return self.task.full_batches(split)

    def inputs(self, batch: Batch) -> Any:
        return self.task.inputs(batch)

    def batch_size_of(self, batch: Batch) -> int:
        return self.task.batch_size_of(batch)

    def forward(self, params, buffers, inputs, train: bool = True) -> tuple[Tensor, Buffers]:
        return self.task.forward(self.original(params), buffers, inputs, train)

    def loss_from_output(self, output: Tensor, batch: Batch) -> Tensor:
        return self.task.loss_from_output(output, batch)

    def loss(self, params, buffers, batch, train: bool = True) -> tuple[Tensor, Buffers]:
        loss, new_buffers = self.task.loss(self.original(params), buffers, batch, train)
        return loss * self.loss_scale, new_buffers

    def evaluate(self, params, buffers, split: str = "val") -> dict[str, float]:
        return self.task.evaluate(self.original(params), buffers, split)

    def meta_penalty(self, params, buffers, generator: torch.Generator) -> Tensor | None:
        return self.task.meta_penalty(self.original(params), buffers, generator)

    def validation_loss(self, final, params=None, buffers=None) -> float:
        return self.task.validation_loss(final, None if params is None else self.original(params), buffers)

    def to(self, device) -> AugmentedTask:
        self.task.to(device)
        self.device = self.task.device
        return self

    def describe(self) -> dict[str, Any]:
        return {**self.task.describe(), "augmentation": self.augmentation}


class AugmentedFamily(TaskFamily):
    """The instances of ``family``, each with a random input presentation, loss scale and parameter scales.

    Per seed (a random stream of its own, so the wrapped family's choices for that seed are unchanged): an input
    mode from ``input_modes`` (``"raw"`` only for tasks that record their standardisation, ``normalization``;
    others fall back to the remaining modes), for ``"scaled"`` a factor log-uniform in
    ``[input_scale_min, input_scale_max]``; a loss scale log-uniform in ``[loss_scale_min, loss_scale_max]``; and
    per parameter tensor a scale log-uniform in ``[param_scale_min, param_scale_max]``. Equal bounds switch a
    transform off; ``input_modes: [standardized]`` leaves the inputs alone (e.g. for the STN, whose loss compares
    the warped input with a target image).

    Args:
        family: the task family to augment (a ``class_path``/``init_args`` entry in a config).
        input_modes: among ``standardized``, ``raw``, ``scaled``.
        input_scale_min, input_scale_max: range of the ``scaled`` input factor.
        loss_scale_min, loss_scale_max: range of the loss scale.
        param_scale_min, param_scale_max: range of each parameter tensor's scale.

    Example:
        >>> from l2l_torch.tasks.quadratic import QuadraticFamily
        >>> fam = AugmentedFamily(QuadraticFamily(dim=3), input_modes=["standardized"])
        >>> task = fam.sample(7)
        >>> sorted(task.describe()["augmentation"])
        ['input', 'loss_scale', 'param_scales']
    """

    def __init__(self, family: TaskFamily, input_modes: list[str] | None = None, input_scale_min: float = 0.1,
                 input_scale_max: float = 10.0, loss_scale_min: float = 0.1, loss_scale_max: float = 10.0,
                 param_scale_min: float = 0.1, param_scale_max: float = 10.0) -> None:
        super().__init__()
        if not isinstance(family, TaskFamily):
            raise TypeError(f"family must be a TaskFamily, got {type(family).__name__}")
        self.input_modes = list(input_modes or INPUT_MODES)
        bad = [m for m in self.input_modes if m not in INPUT_MODES]
        if bad:
            raise ValueError(f"input_modes must be among {INPUT_MODES}, got {bad}")
        for name, lo, hi in (("input_scale", input_scale_min, input_scale_max),
                             ("loss_scale", loss_scale_min, loss_scale_max),
                             ("param_scale", param_scale_min, param_scale_max)):
            if not (0 < lo <= hi and math.isfinite(hi)):
                raise ValueError(f"need 0 < {name}_min <= {name}_max < inf, got {lo}, {hi}")
        self.family = family
        self.input_scale = (input_scale_min, input_scale_max)
        self.loss_scale = (loss_scale_min, loss_scale_max)
        self.param_scale = (param_scale_min, param_scale_max)
        self.name = f"augmented_{family.name}"

    @staticmethod
    def _log_uniform(rng: random.Random, bounds: tuple[float, float]) -> float:
        lo, hi = bounds
        return lo if lo == hi else math.exp(rng.uniform(math.log(lo), math.log(hi)))

    def sample(self, seed: int) -> AugmentedTask:
        task = self.family.sample(seed)
        rng = random.Random(f"task-augmentation/{seed}")
        stats = getattr(task, "normalization", None)
        modes = [m for m in self.input_modes if m != "raw" or stats is not None] or ["standardized"]
        mode = rng.choice(modes)
        factor = self._log_uniform(rng, self.input_scale)  # drawn in every mode: the other draws do not depend on it
        if mode == "raw":
            mean, std = stats
            task.module.register_forward_pre_hook(InputAffine(tuple(std), tuple(mean)))
            presented: dict[str, Any] = {"mode": "raw"}
        elif mode == "scaled":
            task.module.register_forward_pre_hook(InputAffine(factor))
            presented = {"mode": "scaled", "scale": factor}
        else:
            presented = {"mode": "standardized"}
        loss_scale = self._log_uniform(rng, self.loss_scale)
        names = [name for name, _ in task.module.named_parameters()]
        scales = {name: self._log_uniform(rng, self.param_scale) for name in names}
        summary = {"input": presented, "loss_scale": loss_scale,
                   "param_scales": [min(scales.values(), default=1.0), max(scales.values(), default=1.0)]}
        return AugmentedTask(task, scales, loss_scale, summary)

    def to(self, device: torch.device | str) -> AugmentedFamily:
        super().to(device)
        self.family.to(device)
        return self

    def attach(self, datamodule: TensorDataModule) -> AugmentedFamily:
        self.family.attach(datamodule)
        return self

    def prepare_data(self) -> None:
        self.family.prepare_data()

    @property
    def data_source(self) -> str | None:
        return self.family.data_source

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "family": self.family.describe(), "input_modes": self.input_modes,
                "input_scale": list(self.input_scale), "loss_scale": list(self.loss_scale),
                "param_scale": list(self.param_scale)}
