"""Shared fixtures. ``on_device``: run a test on the CPU and, where one is present, on a CUDA device."""

from __future__ import annotations

import pytest
import torch

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                 reason="needs a CUDA device"))]


@pytest.fixture(params=DEVICES)
def on_device(request) -> torch.device:
    """The test body runs with ``torch.set_default_device`` set to each device in turn: the tensors and
    modules it creates land there (CPU generators stay CPU generators; move what they draw with ``.to``).
    On a machine without CUDA the CUDA case is skipped, so CI runs the CPU case only."""
    torch.set_default_device(request.param)
    try:
        yield torch.device(request.param)
    finally:
        torch.set_default_device("cpu")
