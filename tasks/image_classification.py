"""Image classification optimizees (study Experiments 3 and 4; paper section 3.3-3.4).

One generic :class:`ImageClassificationTask` and :class:`ImageClassificationFamily`, configured per
variant (dataset, network, batch size): the configs ``fmnist_*`` and ``cifar_*`` only set arguments.

Parameter kinds (for learned optimizers with one network per kind, ``per_kind=True``): weights and
biases of ``Conv2d`` layers are ``"conv"``, those of ``Linear`` layers ``"dense"``. BatchNorm scales
and shifts take the kind of the layer they normalise (the preceding conv or linear layer): they
act per conv channel, like a conv bias, so the conv LSTM sees them.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from l2l_torch.data import DATASETS, SOURCES, DataError, ImageDataModule
from l2l_torch.tasks import DataTaskFamily, Task
from l2l_torch.tasks.models import ACTIVATIONS, MODELS, POOLINGS, build_model

Data = dict[str, tuple[Tensor, Tensor]]


class ImageClassificationTask(Task):
    """One classifier to train: a network, a seed (initial weights and batch order) and the data.

    Batches of ``batch_size`` are drawn with replacement by indexing the device tensors. Exact
    evaluation uses the whole ``val`` and ``test`` splits and a fixed subset of ``train_eval_size``
    training images for the final training loss (the training split is already shuffled, so its
    first images are a random subset).

    Args:
        seed: instance seed.
        data: ``{"train"|"val"|"test": (x (N, C, H, W) float, y (N,) long)}`` on one device.
        module: the network (a CPU template; see :class:`l2l_torch.tasks.Task`).
        batch_size: training batch size.
        train_eval_size: training images used for the final training loss.
        eval_batch_size: chunk size of exact evaluation (bounds activation memory).
        normalization: the per-channel ``(mean, std)`` the images were standardised with (``x * std + mean``
            gives the pixels in ``[0, 1]`` again; :class:`~l2l_torch.tasks.task_augmentation.AugmentedFamily` uses
            it), or None when unknown.
    """

    has_accuracy = True

    def __init__(self, seed: int, data: Data, module: nn.Module, batch_size: int = 128,
                 train_eval_size: int = 10_000, eval_batch_size: int = 5_000,
                 normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None) -> None:
        super().__init__(seed)
        self.data, self.module, self.normalization = data, module, normalization
        self.batch_size, self.train_eval_size, self.eval_batch_size = batch_size, train_eval_size, eval_batch_size
        self.device = data["train"][0].device
        self._full: dict[str, list[tuple[Tensor, Tensor]]] = {}

    def sample_batch(self, split: str, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        x, y = self.data[split]
        idx = torch.randint(x.shape[0], (self.batch_size,), generator=generator, device=x.device)
        return x[idx], y[idx]

    def full_batches(self, split: str) -> list[tuple[Tensor, Tensor]]:
        if split not in self._full:
            x, y = self.data[split]
            if split == "train":
                x, y = x[: self.train_eval_size], y[: self.train_eval_size]
            self._full[split] = list(zip(x.split(self.eval_batch_size), y.split(self.eval_batch_size), strict=True))
        return self._full[split]

    def batch_size_of(self, batch: tuple[Tensor, Tensor]) -> int:
        return batch[0].shape[0]

    def loss_from_output(self, output: Tensor, batch: tuple[Tensor, Tensor]) -> Tensor:
        return F.cross_entropy(output, batch[1])

    def loss_signature(self) -> tuple[Any, ...]:
        """The class and the network's architecture (its ``repr``: layers, sizes, activations): the data and
        batch order of an instance come in through the batch."""
        return (type(self), repr(self.module))

    def to(self, device: torch.device | str) -> ImageClassificationTask:
        super().to(device)
        # a no-op when the data is already there (the usual case: the family shares its tensors)
        self.data = {k: (x.to(self.device), y.to(self.device)) for k, (x, y) in self.data.items()}
        self._full = {}
        return self

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "batch_size": self.batch_size,
                "params": sum(p.numel() for p in self.module.parameters())}


class ImageClassificationFamily(DataTaskFamily):
    """Classifiers of one architecture on one dataset; an instance is a seed (weights and batch order).

    The data come from an :class:`~l2l_torch.data.ImageDataModule` (e.g. ``FashionMNISTDataModule``): the one
    attached (:meth:`attach`, the config's ``data:`` section in ``train.py``), else one made from the arguments
    below. It loads the dataset once per process onto :attr:`device`, shared by every instance;
    :meth:`prepare_data` checks the files first (``train.py`` and ``evaluate.py`` call it before training).

    Args:
        dataset: ``"fashion_mnist"``, ``"mnist"`` or ``"cifar10"``.
        source: CIFAR-10 only: ``"auto"``, ``"torchvision"`` (official files) or ``"folder"``
            (the JPEG image-folder copy ``data_dir/CIFAR-10-images``).
        data_dir: dataset root; default ``$L2L_DATA_DIR``, else ``./data``.
        model: ``"mlp"``, ``"conv"`` (study 6.5.1), ``"convdense"`` (study 6.5.2) or ``"cnn"``
            (:func:`~l2l_torch.tasks.models.cnn`: ``channels``, ``batchnorm``, ``pooling``).
        hidden: MLP hidden widths (``[20]``: one hidden layer of 20); for ``convdense`` the
            dense width is ``hidden[0]``; for ``cnn`` the dense layers after the convolutions (default none).
        activation: MLP and ``cnn`` activation, one of :data:`~l2l_torch.tasks.models.ACTIVATIONS`
            (``"sigmoid"``, ``"tanh"``, ``"relu"``, ``"gelu"``, ...).
        channels, batchnorm, pooling: ``cnn`` only: the conv widths (default ``[16, 32]``), whether each conv is
            followed by BatchNorm, and ``"max"`` or ``"avg"`` pooling.
        batch_size: training batch size.
        val_fraction: share of the training set held out as the validation split.
        split_seed: seed of that split (the same for every instance).
        train_eval_size: training images for the final training-loss figure.
        eval_batch_size: chunk size of exact evaluation.
        subset: use only this many training and test images (quick tests).
    """

    datamodule_class = ImageDataModule
    task_class: type[ImageClassificationTask] = ImageClassificationTask  # a subclass's instances may be a variant
    data_keys = {"source": "source", "data_dir": "data_dir", "val_fraction": "val_fraction",
                 "split_seed": "split_seed", "subset": "subset"}

    def __init__(self, dataset: str = "fashion_mnist", source: str = "auto", data_dir: str | None = None,
                 model: str = "mlp", hidden: list[int] | None = None, activation: str = "sigmoid",
                 batch_size: int = 128, val_fraction: float = 0.1, split_seed: int = 0,
                 train_eval_size: int = 10_000, eval_batch_size: int = 5_000, subset: int | None = None,
                 channels: list[int] | None = None, batchnorm: bool = True, pooling: str = "max") -> None:
        super().__init__()
        if dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {dataset!r}")
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        if model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {model!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.dataset, self.source, self.data_dir = dataset, source, data_dir
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {sorted(POOLINGS)}, got {pooling!r}")
        self.model, self.activation = model, activation
        self.hidden = list(hidden) if hidden is not None else ([] if model == "cnn" else [20])
        self.channels = list(channels) if channels is not None else None
        self.batchnorm, self.pooling = batchnorm, pooling
        self.batch_size, self.val_fraction, self.split_seed = batch_size, val_fraction, split_seed
        self.train_eval_size, self.eval_batch_size, self.subset = train_eval_size, eval_batch_size, subset
        widths = "x".join(map(str, self.hidden))
        self.name = f"{dataset}_{model}" + (f"_{widths}_{activation}" if model == "mlp" else "")
        if model == "cnn":
            self.name += (f"_{'x'.join(map(str, self.channels or [16, 32]))}{'_bn' if batchnorm else ''}_{pooling}"
                          f"{'_' + widths if widths else ''}_{activation}")

    def make_datamodule(self) -> ImageDataModule:
        return ImageDataModule(self.dataset, self.data_dir, self.source, self.val_fraction, self.split_seed,
                               self.subset)

    def attach(self, datamodule: ImageDataModule) -> ImageClassificationFamily:
        if isinstance(datamodule, ImageDataModule) and datamodule.name != self.dataset:
            raise DataError(f"model.task trains on {self.dataset} but data: holds {datamodule.name}; "
                            "use the same dataset in both")
        return super().attach(datamodule)

    def data(self) -> Data:
        """The shared train/val/test tensors on :attr:`device`."""
        return self.loaded().tensors

    def sample(self, seed: int) -> ImageClassificationTask:
        info = DATASETS[self.dataset]
        module = build_model(self.model, info.shape, info.num_classes, self.hidden, self.activation, self.channels,
                             self.batchnorm, self.pooling)
        return self.task_class(seed, self.data(), module, self.batch_size, self.train_eval_size,
                               self.eval_batch_size, (info.mean, info.std), **self.task_options())

    def task_options(self) -> dict[str, Any]:
        """Keyword arguments of :attr:`task_class` beyond those every instance gets (none here)."""
        return {}

    def describe(self) -> dict[str, Any]:
        cnn = {"channels": self.channels, "batchnorm": self.batchnorm, "pooling": self.pooling} if self.model == "cnn" else {}
        return {**super().describe(), "dataset": self.dataset, "source": self.source, "model": self.model,
                "hidden": self.hidden, "activation": self.activation, "batch_size": self.batch_size, **cnn}
