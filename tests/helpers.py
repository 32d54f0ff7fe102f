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
    """Run ``train.py --task TASK`` with ``fast_dev_run`` (1 meta-step, 1 short validation) in-process.

    Returns the output folder.
    """
    import train

    train.main(["--task", task, "--out", str(out), "--trainer.fast_dev_run", "true",
                "--model.val_tasks", "1", "--model.val_horizon", "2", "--model.tasks_per_step", "1", *extra])
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
