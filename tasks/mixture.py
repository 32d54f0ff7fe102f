"""A task family that mixes image-classification MLPs: random dataset, widths, depth, activation,
batch size and objective scale per task instance.

Meta-training on one fixed task teaches a learned optimizer that task; the paper's LSTM, trained
on sigmoid MLPs, fails on ReLU ones. Sampling the architecture and the data per instance, and
multiplying the training objective by a random factor, forces the optimizer to read the scale and
shape of the problem from its inputs instead of memorising one (Metz et al. 2022, "task
augmentation").

Every choice is a pure function of the instance seed, so validation instances (seeds >=
``VAL_SEED_OFFSET``) are drawn from the same mixture but are never trained on.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from l2l_torch.data import DATASETS
from l2l_torch.tasks import TaskFamily
from l2l_torch.tasks.image_classification import ImageClassificationFamily, ImageClassificationTask
from l2l_torch.tasks.models import ACTIVATIONS, build_model


class ScaledClassificationTask(ImageClassificationTask):
    """An :class:`ImageClassificationTask` whose *training* loss is multiplied by ``loss_scale``.

    Only :meth:`loss` (what the optimizer differentiates and meta-training averages) is scaled;
    :meth:`evaluate` reports the plain cross-entropy, so validation losses of instances with
    different scales stay comparable for checkpoint selection.
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


class MLPMixtureFamily(TaskFamily):
    """Image-classification MLPs with a random configuration per instance.

    Per seed, uniformly at random: a dataset from ``datasets``, an activation from ``activations``,
    a depth from ``depths`` and for each hidden layer a width from ``widths``, a batch size from
    ``batch_sizes``; and a loss scale drawn log-uniformly from ``[loss_scale_min, loss_scale_max]``.

    One :class:`~l2l_torch.tasks.image_classification.ImageClassificationFamily` per dataset loads that dataset
    through its own DataModule; the mixture takes no ``data:`` section.

    Args:
        datasets: dataset names (same input shape, e.g. ``fashion_mnist`` and ``mnist``).
        activations: ``sigmoid``, ``tanh``, ``relu``.
        depths: numbers of hidden layers.
        widths: hidden-layer widths.
        batch_sizes: training batch sizes.
        loss_scale_min, loss_scale_max: range of the random objective scale (1 and 1: none).
        data_dir, val_fraction, split_seed, train_eval_size, eval_batch_size, subset: as in
            :class:`~l2l_torch.tasks.image_classification.ImageClassificationFamily`.

    Example:
        >>> fam = MLPMixtureFamily(data_dir="../shared/data", subset=1000)
        >>> task = fam.sample(3)
        >>> task.describe()["activation"] in ("sigmoid", "tanh", "relu")
        True
    """

    def __init__(self, datasets: list[str] | None = None, activations: list[str] | None = None,
                 depths: list[int] | None = None, widths: list[int] | None = None,
                 batch_sizes: list[int] | None = None, loss_scale_min: float = 0.1, loss_scale_max: float = 10.0,
                 data_dir: str | None = None, val_fraction: float = 0.1, split_seed: int = 0,
                 train_eval_size: int = 10_000, eval_batch_size: int = 5_000, subset: int | None = None) -> None:
        super().__init__()
        self.datasets = list(datasets or ["fashion_mnist", "mnist"])
        self.activations = list(activations or ["sigmoid", "tanh", "relu"])
        self.depths = list(depths or [1, 2])
        self.widths = list(widths or [10, 20, 40])
        self.batch_sizes = list(batch_sizes or [128, 256, 512])
        bad = [a for a in self.activations if a not in ACTIVATIONS]
        if bad:
            raise ValueError(f"activations must be among {sorted(ACTIVATIONS)}, got {bad}")
        bad = [d for d in self.datasets if d not in DATASETS or d == "cifar10"]
        if bad:
            raise ValueError(f"datasets must be 28x28 grey-scale ones (fashion_mnist, mnist), got {bad}")
        if min(self.depths) < 0 or min(self.widths) < 1 or min(self.batch_sizes) < 1:
            raise ValueError("depths must be >= 0, widths and batch sizes >= 1")
        if not 0 < loss_scale_min <= loss_scale_max:
            raise ValueError(f"need 0 < loss_scale_min <= loss_scale_max, got {loss_scale_min}, {loss_scale_max}")
        self.loss_scale_min, self.loss_scale_max = loss_scale_min, loss_scale_max
        self.train_eval_size, self.eval_batch_size = train_eval_size, eval_batch_size
        # one family per dataset: each loads its own dataset through its DataModule, when first needed
        self.families = {d: ImageClassificationFamily(dataset=d, data_dir=data_dir, val_fraction=val_fraction,
                                                      split_seed=split_seed, train_eval_size=train_eval_size,
                                                      eval_batch_size=eval_batch_size, subset=subset)
                         for d in self.datasets}
        self.name = "mlp_mixture"

    def config_of(self, seed: int) -> dict[str, Any]:
        """The random configuration of instance ``seed`` (deterministic)."""
        rng = random.Random(seed)
        depth = rng.choice(self.depths)
        lo, hi = math.log(self.loss_scale_min), math.log(self.loss_scale_max)
        return {"dataset": rng.choice(self.datasets), "activation": rng.choice(self.activations),
                "hidden": [rng.choice(self.widths) for _ in range(depth)],
                "batch_size": rng.choice(self.batch_sizes), "loss_scale": math.exp(rng.uniform(lo, hi))}

    def sample(self, seed: int) -> ScaledClassificationTask:
        cfg = self.config_of(seed)
        fam = self.families[cfg["dataset"]]
        info = DATASETS[cfg["dataset"]]
        module = build_model("mlp", info.shape, info.num_classes, cfg["hidden"], cfg["activation"])
        return ScaledClassificationTask(seed, fam.data(), module, cfg["batch_size"], self.train_eval_size,
                                        self.eval_batch_size, loss_scale=cfg["loss_scale"], config=cfg)

    def to(self, device) -> MLPMixtureFamily:
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
        return {**super().describe(), "datasets": self.datasets, "activations": self.activations,
                "depths": self.depths, "widths": self.widths, "batch_sizes": self.batch_sizes,
                "loss_scale": [self.loss_scale_min, self.loss_scale_max]}
