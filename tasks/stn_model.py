"""The Spatial Transformer of the STN task and its image losses.

:class:`STN`: a localization network predicts the 6 parameters of an affine map per image and kornia's
grid generator and sampler warp the image with it (:func:`warp`; Jaderberg et al. 2015). :func:`ssim_loss`
(``1 - SSIM``) is the optimizee's loss against one target image; :func:`mass_ratio` (warped foreground mass
over input mass) tells an alignment (about 1) from a digit shrunk or moved off the canvas (well below 1).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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


def mass_ratio(warped: Tensor, images: Tensor) -> Tensor:
    """Foreground mass of each warped image over that of its input: ``(B, C, H, W)`` twice -> ``(B,)``;
    about 1 for an alignment, well below 1 for a digit shrunk or moved off the canvas."""
    return warped.sum(dim=(1, 2, 3)) / images.sum(dim=(1, 2, 3)).clamp_min(1e-6)


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
