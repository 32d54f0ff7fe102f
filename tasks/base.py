"""Task interface: an optimizee problem that a learned optimizer trains.

A :class:`Task` is one concrete problem instance (one quadratic, one dataset with one
network architecture). It owns an ``nn.Module`` whose weights are never used directly:
every forward pass goes through :func:`torch.func.functional_call` with an explicit
``params`` dict, so the params can be outputs of the learned optimizer and carry a
graph back to ``theta``.

A :class:`TaskFamily` samples task instances from a seed (random quadratics, random
initial weights, random widths, ...). Meta-training draws training instances from one
range of seeds and validation instances from a disjoint range.
"""

from __future__ import annotations

import abc
from collections.abc import Hashable, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from l2l_torch.data import DataError, TensorDataModule
from l2l_torch.kinds import param_kinds

Params = dict[str, Tensor]
Buffers = dict[str, Tensor]
Batch = Any

#: Seeds at or above this offset are reserved for validation task instances, and seeds
#: at or above :data:`TEST_SEED_OFFSET` for evaluation, so the three never overlap.
VAL_SEED_OFFSET = 1_000_000
TEST_SEED_OFFSET = 2_000_000
TUNE_SEED_OFFSET = 3_000_000


class Task(abc.ABC):
    """One optimizee problem.

    Subclasses set ``self.module`` (an ``nn.Module``) and implement :meth:`sample_batch`
    and :meth:`loss_from_output`. Everything else has working defaults.

    Conventions:
        * ``params`` are the trainable tensors (names as in ``module.named_parameters()``).
        * ``buffers`` are non-trainable state such as BatchNorm running statistics. They are
          treated functionally: :meth:`loss` returns new buffers and never mutates its input.
        * ``loss`` returns a scalar whose gradient w.r.t. each param is that param's gradient.
    """

    module: nn.Module
    #: whether the task has a notion of classification accuracy
    has_accuracy: bool = False
    #: splits that evaluation reports final metrics on (``<split>_<metric>`` in results)
    eval_splits: tuple[str, ...] = ("train", "val", "test")
    #: how much this instance counts in meta-training (its truncations' meta-loss) and in validation,
    #: relative to other instances; it never changes the problem the optimizer sees. Set per family by
    #: :class:`~l2l_torch.tasks.family_mixture.FamilyMixture` (``meta_weights``), so that problems whose losses
    #: live on different scales (1 - SSIM ~ 0.2, CIFAR cross-entropy ~ 1.1) count as chosen.
    meta_weight: float = 1.0
    #: the training loss (:meth:`loss`) is this times the problem's own loss (a loss-scale augmentation); the
    #: meta-loss divides it out (:meth:`meta_factor`), so a scaled instance weighs in meta-training as much as the
    #: same instance unscaled
    loss_scale: float = 1.0

    def meta_factor(self) -> float:
        """What this instance's training losses are multiplied by in a truncation's meta-loss:
        ``meta_weight / loss_scale``."""
        return self.meta_weight / self.loss_scale

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.device = torch.device("cpu")

    # ------------------------------------------------------------------ state
    def init_params(self, seed: int | None = None) -> tuple[Params, Buffers]:
        """Fresh initial params and buffers, deterministic in ``seed``.

        Args:
            seed: initialisation seed; defaults to the task's own seed.

        Returns:
            ``(params, buffers)``: dicts of tensors on :attr:`device`. Params are leaves
            that do not require grad; callers decide.
        """
        seed = self.seed if seed is None else seed
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for m in self.module.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
            params = {k: v.detach().clone().to(self.device) for k, v in self.module.named_parameters()}
        buffers = {k: v.detach().clone().to(self.device) for k, v in self.module.named_buffers()}
        return params, buffers

    def param_kinds(self) -> dict[str, str]:
        """Parameter kind per param name (``"conv"``/``"dense"``), by :func:`l2l_torch.kinds.param_kinds`:
        learned optimizers with one network per kind use this grouping."""
        return param_kinds(self.module)

    # ------------------------------------------------------------------ data
    @abc.abstractmethod
    def sample_batch(self, split: str, generator: torch.Generator) -> Batch:
        """A batch of ``split`` (``"train"``, ``"val"`` or ``"test"``), drawn on :attr:`device`."""

    def full_batches(self, split: str) -> list[Batch]:
        """The whole split as a list of batches, for exact evaluation. Default: one batch."""
        return [self.sample_batch(split, torch.Generator(device=self.device).manual_seed(0))]

    # ------------------------------------------------------------------ maths
    def forward(self, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor], inputs: Any,
                train: bool = True) -> tuple[Tensor, Buffers]:
        """Run the module functionally. Returns ``(output, new_buffers)``."""
        new_buffers = {k: v.clone() for k, v in buffers.items()}  # BatchNorm updates these in place
        self.module.train(train)
        args = inputs if isinstance(inputs, tuple) else (inputs,)
        out = functional_call(self.module, ({**params, **new_buffers}), args)
        return out, new_buffers

    @abc.abstractmethod
    def loss_from_output(self, output: Tensor, batch: Batch) -> Tensor:
        """Scalar loss from the module's output and the batch."""

    def inputs(self, batch: Batch) -> Any:
        """What the module's ``forward`` takes from a batch. Default: ``batch[0]``."""
        return batch[0]

    def loss(self, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor], batch: Batch,
             train: bool = True) -> tuple[Tensor, Buffers]:
        """Scalar training loss of ``params`` on ``batch``, and the updated buffers."""
        out, new_buffers = self.forward(params, buffers, self.inputs(batch), train=train)
        return self.loss_from_output(out, batch), new_buffers

    @torch.no_grad()
    def evaluate(self, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor],
                 split: str = "val") -> dict[str, float]:
        """Metrics of ``params`` on a whole split (loss, and accuracy where it applies).

        The metrics (torchmetrics: the batch-size-weighted mean loss, and micro-averaged multiclass accuracy of
        ``output.argmax(-1)`` against ``batch[1]``) accumulate on the device; the result is read once at the end,
        as plain floats (this synchronises with the device: call it outside hot loops).
        """
        from torchmetrics import MeanMetric
        from torchmetrics.classification import MulticlassAccuracy

        loss, accuracy = MeanMetric(nan_strategy="disable").to(self.device), None  # a NaN loss stays NaN
        for batch in self.full_batches(split):
            out, _ = self.forward(params, buffers, self.inputs(batch), train=False)
            # one value per example: the mean is weighted by batch size (with nan_strategy="disable", torchmetrics
            # 1.9 ignores an explicit weight)
            loss.update(self.loss_from_output(out, batch).expand(self.batch_size_of(batch)))
            if self.has_accuracy:
                if accuracy is None:
                    accuracy = MulticlassAccuracy(num_classes=out.shape[-1], average="micro").to(out.device)
                accuracy.update(out, batch[1])
        metrics = {"loss": float(loss.compute())}
        if accuracy is not None:
            metrics["accuracy"] = float(accuracy.compute())
        return metrics

    def batch_size_of(self, batch: Batch) -> int:
        return 1

    # ------------------------------------------------------------------ meta-objective
    def loss_signature(self) -> Hashable | None:
        """A key that two instances share exactly when their :meth:`loss` is the same function of
        ``(params, buffers, batch)``: all that differs between them (weights, data, batch order) comes in through
        those arguments, not through attributes of the instance. One instance's :meth:`loss` can then be
        vectorised (``torch.func.vmap``) over the stacked params, buffers and batches of all of them
        (:mod:`l2l_torch.vmap_unroll`). ``None`` (the default): not known, only the instance itself qualifies."""
        return None

    def meta_penalty(self, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor],
                     generator: torch.Generator) -> Tensor | None:
        """An extra term of the meta-loss at ``params`` (each optimizee step of an unroll), or ``None``.

        The optimizee never sees it (its gradients come from :meth:`loss` alone); only the learned
        optimizer is meta-trained on ``f(x_t) + meta_penalty(x_t)``. Default: ``None`` (no term, no cost).
        A task that adds a term here should add the same kind of term in :meth:`validation_loss`.
        """
        return None

    def validation_loss(self, final: Mapping[str, float], params: Mapping[str, Tensor] | None = None,
                        buffers: Mapping[str, Tensor] | None = None) -> float:
        """The number meta-training validates (selects checkpoints) on, from a trained optimizee.

        Args:
            final: the final metrics of the run (``<split>_<metric>``, as in ``RunResult.final``).
            params, buffers: the trained optimizee (for tasks whose :meth:`meta_penalty` needs them).

        Default: the loss on the ``val`` split, or on the only split (e.g. quadratics).
        """
        split = "val" if "val" in self.eval_splits else self.eval_splits[0]
        return final.get(f"{split}_loss", float("nan"))

    def to(self, device: torch.device | str) -> Task:
        """Move the task's data and module to ``device``. Returns ``self``."""
        # The module itself stays on the CPU: it is only a template for initialisation (so
        # seeds give the same weights on every device) and functional_call swaps in params
        # and buffers that live on ``device``.
        self.device = torch.device(device)
        return self

    def describe(self) -> dict[str, Any]:
        """A small JSON-able description (for logs, results and checkpoints)."""
        return {"class": type(self).__name__, "seed": self.seed}


class TaskFamily(abc.ABC):
    """A distribution over task instances.

    :meth:`sample` is deterministic in its seed. Meta-training uses seeds below
    :data:`VAL_SEED_OFFSET`, validation seeds from it, and evaluation seeds from
    :data:`TEST_SEED_OFFSET`, so held-out instances are never trained on.
    """

    #: a short name used in logs, checkpoints and results
    name: str = "task"

    def __init__(self) -> None:
        self.device = torch.device("cpu")

    @abc.abstractmethod
    def sample(self, seed: int) -> Task:
        """The task instance for ``seed``, on :attr:`device`."""

    def to(self, device: torch.device | str) -> TaskFamily:
        self.device = torch.device(device)
        return self

    def attach(self, datamodule: TensorDataModule) -> TaskFamily:
        """Take the data from ``datamodule`` (the config's ``data:`` section); families with data accept one."""
        raise DataError(f"{type(self).__name__} takes no data: section (its data come from its own arguments); "
                        "remove data: from the config")

    def prepare_data(self) -> None:  # noqa: B027  (nothing to prepare for synthetic tasks)
        """Make sure the data files are there (found, extracted or downloaded); a :class:`DataError` if not."""

    @property
    def data_source(self) -> str | None:
        """Which data the family uses, from where (one line for the run's log); None for synthetic tasks."""
        return None

    def describe(self) -> dict[str, Any]:
        return {"class": type(self).__name__, "name": self.name}


class DataTaskFamily(TaskFamily):
    """A task family whose data come from a :class:`~l2l_torch.data.TensorDataModule`.

    ``train.py`` hands it the config's ``data:`` section (:meth:`attach`); built on its own (tests,
    ``evaluate.py``, research tools) it makes the same DataModule class from its own data arguments
    when it first needs the data. Either way the data are loaded by the DataModule, lazily, onto
    :attr:`device`.

    Subclasses set :attr:`datamodule_class` and :attr:`data_keys`; :meth:`make_datamodule` builds from them.
    """

    #: the DataModule class that can feed this family
    datamodule_class: type[TensorDataModule] = TensorDataModule
    #: the family's data settings (attribute names) -> the DataModule's (init-argument and attribute names)
    data_keys: dict[str, str] = {}

    def __init__(self) -> None:
        super().__init__()
        self.datamodule: TensorDataModule | None = None

    def make_datamodule(self) -> TensorDataModule:
        """The DataModule of this family's own data arguments (when none is attached)."""
        return self.datamodule_class(**{theirs: getattr(self, mine) for mine, theirs in self.data_keys.items()})

    def attach(self, datamodule: TensorDataModule) -> DataTaskFamily:
        """Take the data from ``datamodule``. Data settings given on one side only apply to both; a setting
        given differently on both sides is a :class:`DataError`."""
        if not isinstance(datamodule, self.datamodule_class):
            raise DataError(f"data: {type(datamodule).__name__} cannot feed {type(self).__name__} "
                            f"(it takes a {self.datamodule_class.__name__})")
        datamodule.adopt(self, self.data_keys)
        self.datamodule = datamodule
        return self

    def data_module(self) -> TensorDataModule:
        """The attached DataModule, else one made from the family's arguments (kept)."""
        if self.datamodule is None:
            self.datamodule = self.make_datamodule()
        return self.datamodule

    def loaded(self) -> TensorDataModule:
        """The DataModule with its tensors on :attr:`device` (prepared and set up on first use)."""
        return self.data_module().load(self.device)

    def prepare_data(self) -> None:
        self.data_module().prepare_data()

    @property
    def data_source(self) -> str:
        return self.data_module().data_source

    def to(self, device: torch.device | str) -> DataTaskFamily:
        super().to(device)
        if self.datamodule is not None and self.datamodule.loaded_on is not None:
            self.datamodule.to(self.device)
        return self
