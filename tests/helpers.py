"""Shared test helpers: one-line smoke tests for configs, tasks and learned optimizers."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call

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


def quadratic64(seed: int = 0):
    """Two 4-d quadratics in float64 (for gradchecks)."""
    from l2l_torch.tasks.quadratic import QuadraticFamily

    task = QuadraticFamily(dim=4, num=2).sample(seed)
    task.w, task.y = task.w.double(), task.y.double()
    task.module.double()
    return task


def gradcheck_meta_gradient(lopt: LearnedOptimizerBase, task: Task, steps: int = 3) -> bool:
    """float64 gradcheck of the meta-gradient of a ``steps``-step unroll (exact second order) w.r.t. theta.

    Theta is bound into ``lopt`` through ``torch.func.functional_call`` so finite differences can perturb it.
    """
    names = [n for n, _ in lopt.named_parameters()]

    class Bound(LearnedOptimizerBase):
        arch_name = "bound"

        def __init__(self, theta):
            super().__init__()
            self.theta = theta

        def init_state(self, p, kinds=None):
            return lopt.init_state(p, kinds)

        def step(self, p, g, s):
            return functional_call(lopt, self.theta, (p, g, s))

        def coord_state(self, s):
            return lopt.coord_state(s)

        def state_from_coords(self, g, c):
            return lopt.state_from_coords(g, c)

    def meta_loss(*theta):
        bound = Bound(dict(zip(names, theta, strict=True)))
        return truncated_unroll(bound, init_unroll(bound, task, 0), steps, second_order=True).meta_loss

    theta = tuple(p.detach().clone().requires_grad_() for p in lopt.parameters())
    return torch.autograd.gradcheck(meta_loss, theta, eps=1e-6, atol=1e-5, rtol=1e-4)


def tiny_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2))


def tiny_convnet() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
