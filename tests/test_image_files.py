"""The image files evaluate.py writes: the same pixels as torchvision's ``save_image``, in fewer bytes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from l2l_torch.plots import save_png


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.mark.parametrize("colours", [40, 1000])
def test_save_png_keeps_torchvisions_pixels(tmp_path, colours):
    from torchvision.utils import save_image

    gen = torch.Generator().manual_seed(0)
    levels = torch.linspace(0, 1, colours)
    image = levels[torch.randint(0, colours, (1, 30, 40), generator=gen)].expand(3, -1, -1).clone()
    image[0, :2] = 0.25  # a coloured border, as the grids have
    save_image(image, tmp_path / "torchvision.png")
    save_png(image, tmp_path / "ours.png")
    np.testing.assert_array_equal(_pixels(tmp_path / "ours.png"), _pixels(tmp_path / "torchvision.png"))
    assert Image.open(tmp_path / "ours.png").mode == ("P" if colours <= 256 else "RGB")


def test_save_png_of_one_channel(tmp_path):
    image = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(1))
    save_png(image, tmp_path / "grey.png")
    rgb = _pixels(tmp_path / "grey.png")
    assert rgb.shape == (8, 8, 3) and (rgb[..., 0] == rgb[..., 2]).all()
