"""Experiment 5 of the study: a Spatial Transformer that warps affNIST digits onto one example 8.

The optimizee is an STN (Jaderberg et al. 2015): a localization network predicts the 6 parameters
of an affine map per image, kornia's grid generator and sampler warp the image with it, and the
loss is ``1 - SSIM(warped, target)`` against one fixed example 8. Training uses 8s; evaluation also
applies the trained STN to unseen 8s, 6s and 1s (study 6.6.1).

Because SSIM is high wherever both images are black, an optimizer can lower the loss by shrinking
the digit or moving it off the canvas (what the study's LSTM learned). :meth:`STNTask.evaluate`
therefore also reports the foreground-mass ratio (warped mass / input mass, mean over images),
which is about 1 for an alignment and well below 1 for a removal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from l2l_torch.affnist import DigitSets, load_digit_sets
from l2l_torch.tasks import Task, TaskFamily

IDENTITY_AFFINE = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def warp(images: Tensor, theta: Tensor) -> Tensor:
    """Warp images by normalized affine maps with kornia's grid generator and sampler.

    Args:
        images: ``(B, C, H, W)``.
        theta: ``(B, 2, 3)`` destination-to-source affine maps in normalized ``[-1, 1]``
            coordinates (the STN convention: output pixel ``p`` samples the input at ``theta @ [p, 1]``).

    Returns:
        ``(B, C, H, W)``; ``theta`` = identity returns ``images``.
    """
    from kornia.geometry.transform import homography_warp

    bottom = theta.new_tensor([0.0, 0.0, 1.0]).expand(theta.shape[0], 1, 3)
    return homography_warp(images, torch.cat([theta, bottom], dim=1), images.shape[-2:],
                           normalized_coordinates=True, align_corners=False)


def ssim_per_image(x: Tensor, y: Tensor, window_size: int = 11, scale: int = 1, blur: float = 0.0) -> Tensor:
    """Mean SSIM map per image with kornia's SSIM (Gaussian window, sigma 1.5, data range 1),
    optionally at a coarser scale.

    ``scale > 1`` average-pools both images by that factor first and ``blur > 0`` smooths both with
    a Gaussian of that sigma (pixels after pooling), like the coarser scales of multi-scale SSIM.
    ``eps=0`` so that identical images score exactly 1 (kornia's default ``eps`` leaves black
    images at 0.99999); the constants ``c1 c2 > 0`` already keep the denominator positive.

    Args:
        x, y: ``(B, C, H, W)`` in ``[0, 1]`` (``y`` may be ``(1, C, H, W)`` and is broadcast).

    Returns:
        ``(B,)`` SSIM in ``[-1, 1]``.
    """
    from kornia.filters import gaussian_blur2d
    from kornia.metrics import ssim

    if scale > 1:
        x, y = F.avg_pool2d(x, scale), F.avg_pool2d(y, scale)
    if blur > 0:
        k = 2 * math.ceil(2 * blur) + 1
        x, y = gaussian_blur2d(x, (k, k), (blur, blur)), gaussian_blur2d(y, (k, k), (blur, blur))
    return ssim(x, y.expand_as(x), window_size, max_val=1.0, eps=0.0).mean(dim=(1, 2, 3))


def ssim_loss(x: Tensor, y: Tensor, window_size: int = 11, scale: int = 1, blur: float = 0.0) -> Tensor:
    """The study's loss ``1 - SSIM(x, y)`` (mean over the batch), in ``[0, 2]``, 0 for ``x == y``.

    Note: this is *not* ``kornia.losses.ssim_loss``, which returns ``(1 - SSIM) / 2``.
    ``scale`` and ``blur`` as in :func:`ssim_per_image`.
    """
    return 1.0 - ssim_per_image(x, y, window_size, scale, blur).mean()


#: the digits other than the trained 8 and the test 6 and 1, for ``STNFamily(aux_digits=...)``
OTHER_DIGITS: tuple[int, ...] = (0, 2, 3, 4, 5, 7, 9)


def mass_ratio(warped: Tensor, images: Tensor) -> Tensor:
    """Foreground mass of each warped image over that of its input: ``(B, C, H, W)`` twice -> ``(B,)``;
    about 1 for an alignment, well below 1 for a digit shrunk or moved off the canvas."""
    return warped.sum(dim=(1, 2, 3)) / images.sum(dim=(1, 2, 3)).clamp_min(1e-6)


def _aux_description(data: DigitSets, aux_weight: float) -> dict[str, Any]:
    """The meta-objective term on other digits, for ``describe`` (empty when off)."""
    return {"aux_weight": aux_weight, "aux_images": list(data.aux.shape[:2])} if aux_weight else {}


class AffineHead(nn.Linear):
    """The localization net's last layer: zero weights and an identity bias, so that a fresh STN
    starts at the identity transform whatever the seed (the weights still receive gradients)."""

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.weight)
        with torch.no_grad():
            self.bias.copy_(torch.tensor(IDENTITY_AFFINE))


class STN(nn.Module):
    """Localization net (2 conv + 2 dense layers) + kornia grid generator and sampler.

    The localization net sees the input at half resolution (20x20), which is enough to find a
    digit's pose and keeps the optimizee cheap on a CPU.

    Shapes: input ``(B, 1, H, W)`` -> warped ``(B, 1, H, W)``; :meth:`theta` gives ``(B, 2, 3)``.
    """

    def __init__(self, channels: tuple[int, int] = (8, 16), hidden: int = 32) -> None:
        super().__init__()
        c1, c2 = channels
        self.conv1 = nn.Conv2d(1, c1, 5)
        self.conv2 = nn.Conv2d(c1, c2, 3)
        self.fc1 = nn.Linear(c2 * 9, hidden)
        self.fc2 = AffineHead(hidden, 6)

    def theta(self, x: Tensor) -> Tensor:
        h = F.avg_pool2d(x, 2)
        h = F.max_pool2d(F.relu(self.conv1(h)), 2)
        h = F.adaptive_max_pool2d(F.relu(self.conv2(h)), 3)
        h = F.relu(self.fc1(h.flatten(1)))
        return self.fc2(h).view(-1, 2, 3)

    def forward(self, x: Tensor) -> Tensor:
        return warp(x, self.theta(x))


class STNTask(Task):
    """Align digits to one example image with an STN; loss ``1 - SSIM`` (see :func:`ssim_loss`).

    One instance = one initialisation seed and batch order over shared data (:class:`DigitSets`).
    A batch is ``(images,)`` with images ``(batch_size, 1, 40, 40)`` drawn with replacement from
    the ``train`` split. ``evaluate`` reports ``loss``, ``ssim`` and ``mass_ratio`` per split.

    With ``aux_weight > 0`` (and ``data.aux``), the learned optimizer's meta-objective adds
    ``aux_weight * mass_penalty`` on other digits (:meth:`meta_penalty`, :meth:`validation_loss`); the
    optimizee still trains on ``1 - SSIM`` of its 8s alone.
    """

    def __init__(self, data: DigitSets, seed: int = 0, batch_size: int = 32, window_size: int = 11,
                 ssim_scale: int = 2, ssim_blur: float = 1.0, channels: tuple[int, int] = (8, 16),
                 hidden: int = 32, eval_batch: int = 500, aux_weight: float = 0.0) -> None:
        super().__init__(seed)
        if aux_weight and (data.aux is None or data.aux_val is None):
            raise ValueError("aux_weight > 0 needs the other digits' images (load_digit_sets(aux_digits=...))")
        self.data, self.batch_size, self.eval_batch, self.aux_weight = data, batch_size, eval_batch, aux_weight
        self.ssim_args = (window_size, ssim_scale, ssim_blur)
        self.eval_splits = ("train", "val", *sorted((k for k in data.splits if k.startswith("test")),
                                                    key=lambda k: -int(k[4:]) if k[4:].isdigit() else 0))
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

    def mass_penalty(self, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor], images: Tensor) -> Tensor:
        """How far the STN changes the size of other digits: ``mean_d log(mass ratio of digit d) ** 2``.

        Args:
            images: ``(D, n, 1, H, W)``, ``n`` images of each of ``D`` digits.

        Returns:
            A scalar: 0 when every digit's mean foreground-mass ratio (warped / input) is 1.
        """
        per_digit = self.digit_mass_ratios(params, buffers, images)
        return per_digit.clamp_min(1e-6).log().square().mean()  # (a removed digit: large, not infinite)

    def digit_mass_ratios(self, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor], images: Tensor) -> Tensor:
        """``(D, n, 1, H, W)`` images of ``D`` digits -> ``(D,)``: each digit's mean foreground-mass ratio
        (:func:`mass_ratio`) under the STN of ``params``."""
        x = images.flatten(0, 1)
        warped, _ = self.forward(params, buffers, x, train=False)
        return mass_ratio(warped, x).view(images.shape[:2]).mean(dim=1)

    def sample_aux(self, generator: torch.Generator) -> Tensor:
        """``(D, batch_size // D, 1, H, W)``: random training images of each of the ``D`` other digits."""
        aux = self.data.aux
        per = max(1, self.batch_size // aux.shape[0])
        idx = torch.randint(aux.shape[1], (aux.shape[0], per), generator=generator, device=self.device)
        return aux[torch.arange(aux.shape[0], device=self.device).unsqueeze(1), idx]

    def meta_penalty(self, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor],
                     generator: torch.Generator) -> Tensor | None:
        """``aux_weight * mass_penalty`` on a :meth:`sample_aux` batch of the other digits."""
        if not self.aux_weight:
            return None
        return self.aux_weight * self.mass_penalty(params, buffers, self.sample_aux(generator))

    def validation_loss(self, final: Mapping[str, float], params: Mapping[str, Tensor] | None = None,
                        buffers: Mapping[str, Tensor] | None = None) -> float:
        """The held-out loss, plus ``aux_weight * mass_penalty`` on the other digits' validation images."""
        loss = super().validation_loss(final)
        if not self.aux_weight:
            return loss
        if params is None or buffers is None:
            raise ValueError("aux_weight > 0: validation_loss needs the trained params and buffers")
        with torch.no_grad():
            return loss + self.aux_weight * float(self.mass_penalty(params, buffers, self.data.aux_val))

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
                "splits": {k: int(v.shape[0]) for k, v in self.data.splits.items()},
                **_aux_description(self.data, self.aux_weight)}


class STNFamily(TaskFamily):
    """STN alignment problems on affNIST 8s; instances differ by init seed and batch order.

    The data are loaded (or generated) once and shared by every instance.

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
            blur of sigma ``ssim_blur`` (see :func:`ssim_per_image`). At full 40x40 resolution
            kornia's 1.5-pixel SSIM window compares single strokes: a black image then scores
            about as well as a well-aligned different 8, so removing the digit is a near-optimum
            even for Adam. A coarser scale (the defaults), as in the coarse scales of the study's
            multi-scale SSIM, rewards alignment over removal (``research/experiments/affnist/ssim_scales.json``).
        channels, hidden: localization-net widths.
        aux_digits, aux_weight: other digits (MNIST/affNIST training and validation images, never test
            ones; they must differ from ``digit`` and ``test_digits``) and the weight of a meta-objective
            term that asks the trained STN to keep their size (:meth:`STNTask.mass_penalty`). The
            optimizee never sees them; only the learned optimizer's meta-loss and validation do. Default: off.
        n_aux, n_aux_val: training and validation images per other digit.
    """

    name = "affnist"

    def __init__(self, data_dir: str | None = None, source: str = "auto", digit: int = 8,
                 test_digits: tuple[int, ...] = (8, 6, 1), n_train: int = 2000, n_val: int = 200,
                 n_test: int = 200, target_index: int = 13, data_seed: int = 0, batch_size: int = 32,
                 window_size: int = 11, ssim_scale: int = 2, ssim_blur: float = 1.0,
                 channels: tuple[int, int] = (8, 16), hidden: int = 32, aux_digits: tuple[int, ...] = (),
                 aux_weight: float = 0.0, n_aux: int = 200, n_aux_val: int = 100) -> None:
        super().__init__()
        if aux_weight < 0 or (aux_weight > 0 and not aux_digits):
            raise ValueError(f"aux_weight must be >= 0 and needs aux_digits, got {aux_weight} and {list(aux_digits)}")
        if window_size < 3 or window_size % 2 == 0:
            raise ValueError(f"window_size must be odd and >= 3, got {window_size}")
        if ssim_scale < 1 or ssim_blur < 0:
            raise ValueError(f"ssim_scale must be >= 1 and ssim_blur >= 0, got {ssim_scale} and {ssim_blur}")
        self.data = load_digit_sets(data_dir, digit, tuple(test_digits), n_train, n_val, n_test,
                                    target_index, data_seed, source, tuple(aux_digits), n_aux, n_aux_val)
        self.batch_size, self.ssim_args = batch_size, (window_size, ssim_scale, ssim_blur)
        self.channels, self.hidden, self.aux_weight = tuple(channels), hidden, aux_weight
        #: final metrics that ``evaluate.py`` tabulates for this family
        self.table_metrics = tuple(f"test{d}_{m}" for d in test_digits for m in ("ssim", "mass_ratio"))
        print(f"affnist data: {self.data.source}; " +
              ", ".join(f"{k}: {v.shape[0]}" for k, v in self.data.splits.items()) +
              (f"; meta-objective mass term (weight {aux_weight}) on digits {list(aux_digits)}" if aux_weight else ""),
              flush=True)

    def to(self, device):  # noqa: D102
        super().to(device)
        self.data = self.data.to(self.device)
        return self

    def sample(self, seed: int) -> STNTask:
        return STNTask(self.data, seed, self.batch_size, *self.ssim_args, self.channels, self.hidden,
                       aux_weight=self.aux_weight).to(self.device)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "data": self.data.source, "batch_size": self.batch_size,
                "ssim_window_scale_blur": list(self.ssim_args), **_aux_description(self.data, self.aux_weight)}


class LogSTNGrid(L.Callback):
    """After each validation of meta-training, log the warped digits of one held-out STN trained by
    the current learned optimizer to TensorBoard (``val/stn_grid``) and its foreground-mass ratio.

    Args:
        steps: optimizee steps of that run (default: the module's validation horizon).
        n: images per row.
    """

    def __init__(self, steps: int | None = None, n: int = 8) -> None:
        self.steps, self.n = steps, n

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        from l2l_torch.evaluation import train_optimizee
        from l2l_torch.optim import LearnedOptimizer
        from l2l_torch.tasks.base import VAL_SEED_OFFSET

        hp = pl_module.hparams
        seed = VAL_SEED_OFFSET + hp.get("val_seed", 0)  # the first validation instance
        task = pl_module.task.sample(seed)
        if not hasattr(task, "visualize"):
            return
        steps = self.steps or hp.get("val_horizon") or pl_module.truncation.horizon
        with torch.enable_grad():
            r = train_optimizee(task, lambda g: LearnedOptimizer(g, lopt=pl_module.lopt), steps, seed, keep_params=True)
        if r.diverged:
            return
        img = task.visualize(r.params, r.buffers, self.n)
        for logger in trainer.loggers:
            exp = getattr(logger, "experiment", None)
            if hasattr(exp, "add_image"):
                exp.add_image("val/stn_grid", img, global_step=trainer.global_step)
            if hasattr(exp, "add_scalar"):
                for k in ("val_mass_ratio", "val_ssim"):
                    if k in r.final and math.isfinite(r.final[k]):
                        exp.add_scalar(f"val/stn_{k[4:]}", r.final[k], global_step=trainer.global_step)
