"""Experiment 5 of the study: a Spatial Transformer that warps affNIST digits onto one example 8.

The optimizee is an STN (Jaderberg et al. 2015): a localization network predicts the 6 parameters
of an affine map per image, kornia's grid generator and sampler warp the image with it, and the
loss is ``1 - SSIM(warped, target)`` against one fixed example 8. Training uses 8s; evaluation also
applies the trained STN to unseen 8s, 6s and 1s (study 6.6.1).

Because SSIM is high wherever both images are black, an optimizer can lower the loss by shrinking
the digit or moving it off the canvas (what the study's LSTM learned). :meth:`STNTask.evaluate`
therefore also reports the foreground-mass ratio (warped mass / input mass, mean over images),
which is about 1 for an alignment and well below 1 for a removal.

The network and the losses are in :mod:`l2l_torch.tasks.stn_model`, the data in
:class:`l2l_torch.affnist.AffNISTDataModule`, the TensorBoard grid of warped digits in
:class:`l2l_torch.callbacks.LogSTNGrid`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from l2l_torch.affnist import AffNISTDataModule, DigitSets
from l2l_torch.tasks import DataTaskFamily, Task
from l2l_torch.tasks.stn_model import STN, mass_ratio, ssim_loss, ssim_per_image

__all__ = ["STNTask", "STNFamily"]


class STNTask(Task):
    """Align digits to one example image with an STN; loss ``1 - SSIM`` (see :func:`ssim_loss`).

    One instance = one initialisation seed and batch order over shared data (:class:`DigitSets`).
    A batch is ``(images,)`` with images ``(batch_size, 1, 40, 40)`` drawn with replacement from
    the ``train`` split. ``evaluate`` reports ``loss``, ``ssim`` and ``mass_ratio`` per split.
    """

    def __init__(self, data: DigitSets, seed: int = 0, batch_size: int = 32, window_size: int = 11,
                 ssim_scale: int = 2, ssim_blur: float = 1.0, channels: tuple[int, int] = (8, 16),
                 hidden: int = 32, eval_batch: int = 500) -> None:
        super().__init__(seed)
        self.data, self.batch_size, self.eval_batch = data, batch_size, eval_batch
        self.ssim_args = (window_size, ssim_scale, ssim_blur)
        self.eval_splits = ("train", "val", *sorted((k for k in data.splits if k.startswith("test")),
                                                    key=lambda k: -int(k[4:]) if k[4:].isdigit() else 0))
        #: the validation digits, trained digit first (``val``), then ``val<d>`` for the other test digits
        self.validation_splits = ("val", *sorted((k for k in data.splits if k[3:].isdigit() and k.startswith("val")),
                                                 key=lambda k: -int(k[3:])))
        self.module = STN(tuple(channels), hidden)

    def to(self, device):  # noqa: D102
        super().to(device)
        self.data = self.data.to(self.device)
        return self

    def sample_batch(self, split: str, generator: torch.Generator):
        images = self.data.splits[split]
        idx = torch.randint(images.shape[0], (self.batch_size,), generator=generator, device=self.device)
        return (images[idx],)

    def full_batches(self, split: str):
        return [(x,) for x in self.data.splits[split].split(self.eval_batch)]

    def batch_size_of(self, batch) -> int:
        return batch[0].shape[0]

    def loss_from_output(self, output: Tensor, batch) -> Tensor:
        return ssim_loss(output, self.data.target, *self.ssim_args)

    def loss_signature(self) -> tuple[Any, ...]:
        """The class, the network's architecture, the SSIM settings and the target image (by identity: instances
        of one family share it); the digits of an instance come in through the batch."""
        return (type(self), repr(self.module), self.ssim_args, id(self.data.target))

    @torch.no_grad()
    def evaluate(self, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor],
                 split: str = "val") -> dict[str, float]:
        """``loss`` (1 - mean SSIM), ``ssim`` (mean SSIM to the target) and ``mass_ratio`` (mean over
        images of warped foreground mass / input foreground mass) on the whole ``split``."""
        ssims, ratios = [], []
        for (x,) in self.full_batches(split):
            warped, _ = self.forward(params, buffers, x, train=False)
            ssims.append(ssim_per_image(warped, self.data.target, *self.ssim_args))
            ratios.append(mass_ratio(warped, x))
        s, r = torch.cat(ssims).mean(), torch.cat(ratios).mean()
        vals = torch.stack([1 - s, s, r]).tolist()  # one host sync
        return dict(zip(("loss", "ssim", "mass_ratio"), vals, strict=True))

    @torch.no_grad()
    def visualize(self, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor], n: int = 8,
                  splits: tuple[str, ...] | None = None) -> Tensor:
        """An image grid ``(3, H, W)`` in ``[0, 1]``: per split an input row and the warped row below
        it (the first ``n`` images), with the target in the first column of every row."""
        from torchvision.utils import make_grid

        splits = splits or tuple(s for s in self.eval_splits if s.startswith("test")) or ("val",)
        tiles = []
        for split in splits:
            x = self.data.splits[split][:n]
            warped, _ = self.forward(params, buffers, x, train=False)
            for row in (x, warped):
                pad = x.new_zeros(n - row.shape[0], *row.shape[1:])
                tiles.append(torch.cat([self.data.target, row, pad]))
        grid = make_grid(torch.cat(tiles).clamp(0, 1), nrow=n + 1, padding=2, pad_value=0.5)
        return grid.cpu()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "data": self.data.source, "batch_size": self.batch_size,
                "ssim_window_scale_blur": list(self.ssim_args),
                "splits": {k: int(v.shape[0]) for k, v in self.data.splits.items()}}


class STNFamily(DataTaskFamily):
    """STN alignment problems on affNIST 8s; instances differ by init seed and batch order.

    The digits come from an :class:`~l2l_torch.affnist.AffNISTDataModule`: the one attached (:meth:`attach`,
    the config's ``data:`` section in ``train.py``), else one made from the data arguments below. They are
    loaded (or generated) once, when first needed, and shared by every instance; :attr:`data_source` says
    which data (real or generated) and ``train.py`` logs it.

    Args:
        data_dir: data folder (default ``$L2L_DATA_DIR`` or ``./data``); affNIST ``.mat`` files in
            ``<data_dir>/affNIST`` are used when present, else digits are generated from MNIST.
        source: ``"auto"``, ``"mat"`` or ``"mnist"`` (see :func:`l2l_torch.affnist.load_digit_sets`).
        digit, test_digits: the digit trained on and the digits of the unseen test splits.
        n_train, n_val, n_test: images per split (``n_test`` per test digit).
        target_index: which 8 is the target example.
        data_seed: generation seed of the affine transforms (generated data only).
        batch_size: images per optimizee step.
        window_size: SSIM Gaussian window size (odd).
        ssim_scale, ssim_blur: SSIM is taken after average-pooling by ``ssim_scale`` and a Gaussian
            blur of sigma ``ssim_blur`` (see :func:`~l2l_torch.tasks.stn_model.ssim_per_image`). At full
            40x40 resolution kornia's 1.5-pixel SSIM window compares single strokes: a black image then scores
            about as well as a well-aligned different 8, so removing the digit is a near-optimum
            even for Adam. A coarser scale (the defaults), as in the coarse scales of the study's
            multi-scale SSIM, rewards alignment over removal (``research/experiments/affnist/ssim_scales.json``).
        channels, hidden: localization-net widths.
    """

    name = "affnist"
    datamodule_class = AffNISTDataModule
    data_keys = {k: k for k in ("data_dir", "source", "digit", "test_digits", "n_train", "n_val", "n_test",
                                "target_index", "data_seed")}

    def __init__(self, data_dir: str | None = None, source: str = "auto", digit: int = 8,
                 test_digits: tuple[int, ...] = (8, 6, 1), n_train: int = 2000, n_val: int = 200,
                 n_test: int = 200, target_index: int = 13, data_seed: int = 0, batch_size: int = 32,
                 window_size: int = 11, ssim_scale: int = 2, ssim_blur: float = 1.0,
                 channels: tuple[int, int] = (8, 16), hidden: int = 32) -> None:
        super().__init__()
        if window_size < 3 or window_size % 2 == 0:
            raise ValueError(f"window_size must be odd and >= 3, got {window_size}")
        if ssim_scale < 1 or ssim_blur < 0:
            raise ValueError(f"ssim_scale must be >= 1 and ssim_blur >= 0, got {ssim_scale} and {ssim_blur}")
        self.data_dir, self.source, self.digit, self.test_digits = data_dir, source, digit, tuple(test_digits)
        self.n_train, self.n_val, self.n_test = n_train, n_val, n_test
        self.target_index, self.data_seed = target_index, data_seed
        self.batch_size, self.ssim_args = batch_size, (window_size, ssim_scale, ssim_blur)
        self.channels, self.hidden = tuple(channels), hidden

    @property
    def table_metrics(self) -> tuple[str, ...]:
        """Final metrics that ``evaluate.py`` tabulates for this family."""
        return tuple(f"test{d}_{m}" for d in self.test_digits for m in ("ssim", "mass_ratio"))

    @property
    def data(self) -> DigitSets:
        """The shared digit sets on :attr:`device` (loaded on first use)."""
        return self.loaded().data

    def task_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`STNTask` (a subclass may add some)."""
        return dict(batch_size=self.batch_size, window_size=self.ssim_args[0], ssim_scale=self.ssim_args[1],
                    ssim_blur=self.ssim_args[2], channels=self.channels, hidden=self.hidden)

    task_class = STNTask

    def sample(self, seed: int) -> STNTask:
        return self.task_class(self.data, seed, **self.task_kwargs()).to(self.device)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "data": self.data.source, "batch_size": self.batch_size,
                "ssim_window_scale_blur": list(self.ssim_args)}
