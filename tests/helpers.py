"""Shared test helpers: one-line smoke tests for configs, tasks and learned optimizers."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from l2l_torch.learned_optimizers import LearnedOptimizerBase
from l2l_torch.tasks import Task
from l2l_torch.unroll import init_unroll, truncated_unroll

REPO = Path(__file__).resolve().parent.parent
#: read-only datasets next to the project root (tests and CI read from here)
SHARED_DATA = Path(os.environ.get("L2L_SHARED_DATA", REPO.parent / "shared" / "data"))


def smoke_train(task: str, out: Path, *extra: str) -> Path:
    """Run ``train.py --task TASK`` with ``fast_dev_run`` (1 meta-step of a 3-step truncation, 1 short
    validation) in-process.

    Returns the output folder.
    """
    import train

    train.main(["--task", task, "--out", str(out), "--trainer.fast_dev_run", "true",
                "--model.val_tasks", "1", "--model.val_horizon", "2", "--model.tasks_per_step", "1",
                "--model.unroll", "3", "--model.horizon", "6", "--model.min_unroll", "null", *extra])
    return out


def smoke_unroll(lopt: LearnedOptimizerBase, task: Task, steps: int = 2) -> torch.Tensor:
    """Unroll ``lopt`` on ``task`` for ``steps`` steps; check the meta-gradient reaches every weight of
    theta that the task uses and is finite. Returns the meta-loss."""
    res = truncated_unroll(lopt, init_unroll(lopt, task, 0), steps)
    assert torch.isfinite(res.meta_loss)
    lopt.zero_grad()
    res.meta_loss.backward()
    grads = [p.grad for p in lopt.parameters() if p.grad is not None]
    assert grads, "no meta-gradient reached theta"
    assert all(torch.isfinite(g).all() for g in grads)
    return res.meta_loss.detach()


def write_jpeg_folder(root, per_class: dict[str, int], size: int = 32) -> None:
    """``root/<split>/<class>/NNNN.jpg`` random RGB JPEGs; ``per_class`` maps split -> images per class."""
    from PIL import Image  # torchvision dependency

    g = torch.Generator().manual_seed(0)
    for split, n in per_class.items():
        for c in ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8)
                Image.fromarray(img.permute(1, 2, 0).numpy()).save(root / split / c / f"{i:04d}.jpg")
