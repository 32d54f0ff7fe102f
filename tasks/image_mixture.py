"""The base of the task families that draw an image classifier's configuration per instance (dataset, network,
batch size, objective scale): :class:`~l2l_torch.tasks.mixture.MLPMixtureFamily` and
:class:`~l2l_torch.tasks.cnn_mixture.CNNMixtureFamily`.

A subclass says how a seed becomes a configuration (:meth:`ImageMixtureFamily.config_of`), how a configuration
becomes a network (:meth:`ImageMixtureFamily.build`) and which configurations it can draw at all
(:meth:`ImageMixtureFamily.can_sample`, which the held-out benchmark's disjointness test asks). The data, one
:class:`~l2l_torch.tasks.image_classification.ImageClassificationFamily` per dataset, are shared by every instance
and stay on the family's device.
"""

from __future__ import annotations

import abc
import math
import random
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from l2l_torch.data import DATASETS
from l2l_torch.tasks.base import TaskFamily
from l2l_torch.tasks.image_classification import ImageClassificationFamily, ImageClassificationTask


class ScaledClassificationTask(ImageClassificationTask):
    """An :class:`ImageClassificationTask` whose *training* loss is multiplied by ``loss_scale``.

    Only :meth:`loss` (what the optimizer differentiates) is scaled; the meta-loss divides the scale out
    (:meth:`~l2l_torch.tasks.base.Task.meta_factor`), and :meth:`evaluate` reports the plain cross-entropy, so
    validation losses of instances with different scales stay comparable for checkpoint selection.
    """

    def __init__(self, *args: Any, loss_scale: float = 1.0, config: Mapping[str, Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loss_scale = float(loss_scale)
        self.config = dict(config or {})

    def loss(self, params, buffers, batch, train: bool = True) -> tuple[Tensor, dict[str, Tensor]]:
        loss, new_buffers = super().loss(params, buffers, batch, train)
        return loss * self.loss_scale, new_buffers

    def loss_signature(self) -> tuple[Any, ...]:
        return (*super().loss_signature(), self.loss_scale)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **self.config, "loss_scale": self.loss_scale}


class ImageMixtureFamily(TaskFamily):
    """Image classifiers with a configuration drawn per instance; the data of each dataset loaded once.

    Args:
        datasets: dataset names (keys of :data:`l2l_torch.data.DATASETS`).
        loss_scale_min, loss_scale_max: range of the log-uniform objective scale (1 and 1: none).
        data_dir, source, val_fraction, split_seed, train_eval_size, eval_batch_size, subset: as in
            :class:`~l2l_torch.tasks.image_classification.ImageClassificationFamily` (``source``: CIFAR-10 only).
    """

    def __init__(self, datasets: list[str], loss_scale_min: float = 1.0, loss_scale_max: float = 1.0,
                 data_dir: str | None = None, source: str = "auto", val_fraction: float = 0.1, split_seed: int = 0,
                 train_eval_size: int = 10_000, eval_batch_size: int = 5_000, subset: int | None = None) -> None:
        super().__init__()
        unknown = [d for d in datasets if d not in DATASETS]
        if not datasets or unknown:
            raise ValueError(f"datasets must be among {sorted(DATASETS)}, got {datasets}")
        if not 0 < loss_scale_min <= loss_scale_max:
            raise ValueError(f"need 0 < loss_scale_min <= loss_scale_max, got {loss_scale_min}, {loss_scale_max}")
        self.datasets = list(datasets)
        self.loss_scale_min, self.loss_scale_max = loss_scale_min, loss_scale_max
        self.train_eval_size, self.eval_batch_size = train_eval_size, eval_batch_size
        # one family per dataset: each loads its own dataset through its DataModule, when first needed
        self.families = {d: ImageClassificationFamily(dataset=d, source=source, data_dir=data_dir,
                                                      val_fraction=val_fraction, split_seed=split_seed,
                                                      train_eval_size=train_eval_size,
                                                      eval_batch_size=eval_batch_size, subset=subset)
                         for d in self.datasets}

    @abc.abstractmethod
    def config_of(self, seed: int) -> dict[str, Any]:
        """The random configuration of instance ``seed`` (deterministic): at least ``dataset``, ``batch_size`` and
        ``loss_scale``, and what :meth:`build` needs."""

    @abc.abstractmethod
    def build(self, config: Mapping[str, Any], in_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
        """The network of ``config`` for inputs ``(B, *in_shape)`` and ``num_classes`` logits."""

    @abc.abstractmethod
    def can_sample(self, config: Mapping[str, Any]) -> bool:
        """Whether some seed draws a network of this configuration (the keys of :meth:`config_of`, without
        ``loss_scale``): used to check that held-out models are outside the family."""

    def log_uniform(self, rng: random.Random, lo: float, hi: float) -> float:
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))

    def sample(self, seed: int) -> ScaledClassificationTask:
        cfg = self.config_of(seed)
        info = DATASETS[cfg["dataset"]]
        module = self.build(cfg, info.shape, info.num_classes)
        return ScaledClassificationTask(seed, self.families[cfg["dataset"]].data(), module, cfg["batch_size"],
                                        self.train_eval_size, self.eval_batch_size, (info.mean, info.std),
                                        loss_scale=cfg["loss_scale"], config=cfg)

    def to(self, device) -> ImageMixtureFamily:
        super().to(device)
        for fam in self.families.values():
            fam.to(device)
        return self

    def prepare_data(self) -> None:
        for fam in self.families.values():
            fam.prepare_data()

    @property
    def data_source(self) -> str:
        return "; ".join(fam.data_source for fam in self.families.values())

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "datasets": self.datasets, "loss_scale": [self.loss_scale_min, self.loss_scale_max]}
