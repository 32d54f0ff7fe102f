"""A task family of small image-classification CNNs: random dataset, depth, conv widths, BatchNorm or not, max- or
average-pooling, activation and batch size per task instance.

The networks are :func:`~l2l_torch.tasks.models.cnn`: ``depth`` blocks ``conv 3x3 -> [BatchNorm] -> activation ->
2x2 pooling`` and a linear output layer on the flattened features (no dense hidden layer). Every choice is a pure
function of the instance seed, as in :class:`~l2l_torch.tasks.mixture.MLPMixtureFamily`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from torch import nn

from l2l_torch.tasks.image_mixture import ImageMixtureFamily, ScaledClassificationTask
from l2l_torch.tasks.models import ACTIVATIONS, POOLINGS, cnn

__all__ = ["CNNMixtureFamily", "ScaledClassificationTask"]


class CNNMixtureFamily(ImageMixtureFamily):
    """Image-classification CNNs with a random configuration per instance.

    Per seed, uniformly at random: a dataset from ``datasets``, a depth (conv layers) from ``depths`` and for each
    conv layer a width from ``channels``, BatchNorm after every conv or none (``batchnorm``), a pooling from
    ``poolings``, an activation from ``activations``, a batch size from ``batch_sizes``, and a log-uniform loss
    scale in ``[loss_scale_min, loss_scale_max]`` (default 1: none).

    A batch is ``(x (B, C, H, W), y (B,))``: ``(B, 1, 28, 28)`` for MNIST and Fashion-MNIST, ``(B, 3, 32, 32)`` for
    CIFAR-10, standardised per channel, drawn on the family's device.

    Args:
        datasets: ``fashion_mnist``, ``mnist``, ``cifar10``.
        depths: numbers of conv layers (1 to 4 fit 28x28 inputs).
        channels: conv widths.
        batchnorm: the BatchNorm choices (``[true, false]``: with or without, per instance).
        poolings: ``max``, ``avg``.
        activations: names in :data:`~l2l_torch.tasks.models.ACTIVATIONS`.
        batch_sizes: training batch sizes.
        loss_scale_min, loss_scale_max, data_dir, source, val_fraction, split_seed, train_eval_size,
            eval_batch_size, subset: as in :class:`~l2l_torch.tasks.image_mixture.ImageMixtureFamily`.

    Example:
        >>> fam = CNNMixtureFamily(datasets=["mnist"], data_dir="../shared/data", subset=1000)
        >>> cfg = fam.config_of(5)
        >>> 1 <= len(cfg["channels"]) <= 3 and cfg["pooling"] in ("max", "avg")
        True
    """

    def __init__(self, datasets: list[str] | None = None, depths: list[int] | None = None,
                 channels: list[int] | None = None, batchnorm: list[bool] | None = None,
                 poolings: list[str] | None = None, activations: list[str] | None = None,
                 batch_sizes: list[int] | None = None, loss_scale_min: float = 1.0, loss_scale_max: float = 1.0,
                 data_dir: str | None = None, source: str = "auto", val_fraction: float = 0.1, split_seed: int = 0,
                 train_eval_size: int = 10_000, eval_batch_size: int = 5_000, subset: int | None = None) -> None:
        self.depths = list(depths or [1, 2, 3])
        self.channels = list(channels or [8, 16, 32, 64])
        self.batchnorm = [bool(b) for b in (batchnorm if batchnorm is not None else [True, False])]
        self.poolings = list(poolings or ["max", "avg"])
        self.activations = list(activations or ["relu"])
        self.batch_sizes = list(batch_sizes or [32, 64, 128, 256, 512])
        if not self.batchnorm:
            raise ValueError("batchnorm needs at least one choice (true, false)")
        bad = [a for a in self.activations if a not in ACTIVATIONS] + [p for p in self.poolings if p not in POOLINGS]
        if bad:
            raise ValueError(f"activations must be among {sorted(ACTIVATIONS)} and poolings among {sorted(POOLINGS)}, "
                             f"got {bad}")
        if not 1 <= min(self.depths) <= max(self.depths) <= 4:
            raise ValueError(f"depths must be in [1, 4] (each conv layer halves the image), got {self.depths}")
        if min(self.channels) < 1 or min(self.batch_sizes) < 1:
            raise ValueError("channels and batch sizes must be >= 1")
        super().__init__(list(datasets or ["fashion_mnist", "mnist", "cifar10"]), loss_scale_min, loss_scale_max,
                         data_dir, source, val_fraction, split_seed, train_eval_size, eval_batch_size, subset)
        self.name = "cnn_mixture"

    def config_of(self, seed: int) -> dict[str, Any]:
        """The random configuration of instance ``seed`` (deterministic)."""
        rng = random.Random(seed)
        depth = rng.choice(self.depths)
        return {"model": "cnn", "dataset": rng.choice(self.datasets),
                "channels": [rng.choice(self.channels) for _ in range(depth)],
                "batchnorm": rng.choice(self.batchnorm), "pooling": rng.choice(self.poolings),
                "activation": rng.choice(self.activations), "batch_size": rng.choice(self.batch_sizes),
                "loss_scale": self.log_uniform(rng, self.loss_scale_min, self.loss_scale_max)}

    def build(self, config: Mapping[str, Any], in_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
        return cnn(in_shape, config["channels"], config["batchnorm"], config["pooling"], config["activation"],
                   num_classes)

    def can_sample(self, config: Mapping[str, Any]) -> bool:
        """True for a ``cnn`` without dense hidden layers whose dataset, depth, every conv width, BatchNorm,
        pooling, activation and batch size are among this family's choices."""
        channels = list(config.get("channels") or [])
        return (config.get("model") == "cnn" and not config.get("hidden") and config.get("dataset") in self.datasets
                and len(channels) in self.depths and all(c in self.channels for c in channels)
                and config.get("batchnorm", True) in self.batchnorm and config.get("pooling", "max") in self.poolings
                and config.get("activation") in self.activations and config.get("batch_size") in self.batch_sizes)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "depths": self.depths, "channels": self.channels, "batchnorm": self.batchnorm,
                "poolings": self.poolings, "activations": self.activations, "batch_sizes": self.batch_sizes}
