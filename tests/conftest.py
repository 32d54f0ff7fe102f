"""Shared fixtures. ``on_device``: run a test on the CPU and, where one is present, on a CUDA device.

The report header names the dataset folder the tests read (``$L2L_DATA_DIR``; see ``tests/helpers.py``)."""

from __future__ import annotations

import os

import pytest
import torch

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                 reason="needs a CUDA device"))]


def pytest_report_header(config) -> str:
    from tests.helpers import DATA_DIR_VAR, SHARED_DATA, missing_data

    have = [f for f in ("FashionMNIST", "MNIST", "CIFAR-10-images") if missing_data(f) is None]
    source = f"${DATA_DIR_VAR}" if os.environ.get(DATA_DIR_VAR) else f"default, ${DATA_DIR_VAR} unset"
    return (f"datasets: {SHARED_DATA} ({source}); present: {', '.join(have) or 'none'}"
            + ("" if len(have) == 3 else " (tests that need the others are skipped)"))


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
