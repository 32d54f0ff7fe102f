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

import random
from collections.abc import Mapping
from typing import Any

from torch import nn

from l2l_torch.tasks.image_mixture import ImageMixtureFamily, ScaledClassificationTask
from l2l_torch.tasks.models import ACTIVATIONS, mlp

__all__ = ["MLPMixtureFamily", "ScaledClassificationTask"]


class MLPMixtureFamily(ImageMixtureFamily):
    """Image-classification MLPs with a random configuration per instance.

    Per seed, uniformly at random: a dataset from ``datasets``, an activation from ``activations``,
    a depth from ``depths`` and for each hidden layer a width from ``widths``, a batch size from
    ``batch_sizes``; and a loss scale drawn log-uniformly from ``[loss_scale_min, loss_scale_max]``.

    One :class:`~l2l_torch.tasks.image_classification.ImageClassificationFamily` per dataset loads that dataset
    through its own DataModule; the mixture takes no ``data:`` section. CIFAR-10 is not offered: these MLPs are
    for the 28x28 grey-scale datasets (CIFAR-10 goes to :class:`~l2l_torch.tasks.cnn_mixture.CNNMixtureFamily`).

    Args:
        datasets: dataset names (same input shape, e.g. ``fashion_mnist`` and ``mnist``).
        activations: names in :data:`~l2l_torch.tasks.models.ACTIVATIONS` (``sigmoid``, ``tanh``, ``relu``,
            ``gelu``, ...).
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
        datasets = list(datasets or ["fashion_mnist", "mnist"])
        bad = [d for d in datasets if d not in ("fashion_mnist", "mnist")]
        if bad:
            raise ValueError(f"datasets must be 28x28 grey-scale ones (fashion_mnist, mnist), got {bad}")
        self.activations = list(activations or ["sigmoid", "tanh", "relu"])
        self.depths = list(depths or [1, 2])
        self.widths = list(widths or [10, 20, 40])
        self.batch_sizes = list(batch_sizes or [128, 256, 512])
        bad = [a for a in self.activations if a not in ACTIVATIONS]
        if bad:
            raise ValueError(f"activations must be among {sorted(ACTIVATIONS)}, got {bad}")
        if min(self.depths) < 0 or min(self.widths) < 1 or min(self.batch_sizes) < 1:
            raise ValueError("depths must be >= 0, widths and batch sizes >= 1")
        super().__init__(datasets, loss_scale_min, loss_scale_max, data_dir, "auto", val_fraction, split_seed,
                         train_eval_size, eval_batch_size, subset)
        self.name = "mlp_mixture"

    def config_of(self, seed: int) -> dict[str, Any]:
        """The random configuration of instance ``seed`` (deterministic)."""
        rng = random.Random(seed)
        depth = rng.choice(self.depths)
        lo, hi = self.loss_scale_min, self.loss_scale_max
        return {"dataset": rng.choice(self.datasets), "activation": rng.choice(self.activations),
                "hidden": [rng.choice(self.widths) for _ in range(depth)],
                "batch_size": rng.choice(self.batch_sizes), "loss_scale": self.log_uniform(rng, lo, hi)}

    def build(self, config: Mapping[str, Any], in_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
        return mlp(in_shape, config["hidden"], config["activation"], num_classes)

    def can_sample(self, config: Mapping[str, Any]) -> bool:
        """True for an MLP (``model`` absent or ``"mlp"``) whose dataset, activation, depth, every width and batch
        size are among this family's choices."""
        hidden = list(config.get("hidden", []))
        return (config.get("model", "mlp") == "mlp" and config.get("dataset") in self.datasets
                and config.get("activation") in self.activations and len(hidden) in self.depths
                and all(w in self.widths for w in hidden) and config.get("batch_size") in self.batch_sizes)

    def describe(self) -> dict[str, Any]:
        return {"class": type(self).__name__, "name": self.name, "datasets": self.datasets,
                "activations": self.activations, "depths": self.depths, "widths": self.widths,
                "batch_sizes": self.batch_sizes, "loss_scale": [self.loss_scale_min, self.loss_scale_max]}
