"""Task.evaluate: torchmetrics' weighted mean loss and accuracy over a whole split, NaN kept as NaN."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from l2l_torch.tasks.image_classification import ImageClassificationTask
from l2l_torch.tasks.models import build_model


def _task(eval_batch_size: int) -> ImageClassificationTask:
    g = torch.Generator().manual_seed(0)
    data = {s: (torch.randn(50, 1, 8, 8, generator=g), torch.randint(10, (50,), generator=g))
            for s in ("train", "val", "test")}
    torch.manual_seed(0)
    return ImageClassificationTask(0, data, build_model("mlp", (1, 8, 8), hidden=[6]), eval_batch_size=eval_batch_size)


def test_metrics_over_uneven_batches_equal_the_whole_split_at_once():
    task = _task(eval_batch_size=16)  # batches of 16, 16, 16, 2
    params, buffers = task.init_params(0)
    got = task.evaluate(params, buffers, "val")
    x, y = task.data["val"]
    out, _ = task.forward(params, buffers, task.inputs((x, y)), train=False)
    assert math.isclose(got["loss"], float(F.cross_entropy(out, y)), rel_tol=1e-5)
    assert got["accuracy"] == float((out.argmax(-1) == y).float().mean())


def test_a_nan_loss_is_reported_as_nan():
    task = _task(eval_batch_size=16)
    params, buffers = task.init_params(0)
    params = {k: torch.full_like(v, float("nan")) for k, v in params.items()}
    assert math.isnan(task.evaluate(params, buffers, "val")["loss"])
