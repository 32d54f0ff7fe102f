"""Shared test helpers: one-line smoke tests for configs, tasks and learned optimizers, and the
skip marker of tests that read a real dataset.

Datasets: tests read the torchvision dataset files (``FashionMNIST/``, ``MNIST/``, ``CIFAR-10-images/``)
from ``$L2L_DATA_DIR``, the variable the library reads too (:func:`l2l_torch.data.resolve_data_dir`);
when it is unset, from ``<repo>/../shared/data``. A test that reads one is marked
``@needs_data("FashionMNIST")`` and is skipped, with the folder and the variable in the reason, where
that folder is missing or empty. Tests that write their own tiny data sets are not marked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.func import functional_call

from l2l_torch.learned_optimizers import LearnedOptimizerBase
from l2l_torch.tasks import Task
from l2l_torch.unroll import init_unroll, truncated_unroll

REPO = Path(__file__).resolve().parent.parent
#: the environment variable that names the dataset folder (the library's; see l2l_torch/data.py)
DATA_DIR_VAR = "L2L_DATA_DIR"
#: the dataset folder the tests read: ``$L2L_DATA_DIR``, else ``<repo>/../shared/data`` (read-only there)
SHARED_DATA = Path(os.environ.get(DATA_DIR_VAR) or REPO.parent / "shared" / "data").expanduser()


def missing_data(*folders: str, root: str | os.PathLike | None = None) -> str | None:
    """Why a test that reads ``root/<folder>`` for each of ``folders`` cannot run (a missing or empty folder),
    or None when all are there. ``root`` defaults to :data:`SHARED_DATA`."""
    root = Path(root) if root is not None else SHARED_DATA
    missing = [f for f in folders if not ((root / f).is_dir() and any((root / f).iterdir()))]
    if not missing:
        return None
    where = root if os.environ.get(DATA_DIR_VAR) else f"unset, so {root}"
    return (f"needs {', '.join(f + '/' for f in missing)} under ${DATA_DIR_VAR} ({where}); "
            f"set {DATA_DIR_VAR} to a folder with the torchvision dataset files")


def needs_data(*folders: str) -> pytest.MarkDecorator:
    """Skip marker of a test that reads these dataset folders of :data:`SHARED_DATA` (e.g. ``"FashionMNIST"``)."""
    reason = missing_data(*folders)
    return pytest.mark.skipif(reason is not None, reason=reason or f"{', '.join(folders)} present")


#: default datasets of the task families whose constructor does not name one
_DEFAULT_DATASETS = {"ImageClassificationFamily": ["fashion_mnist"], "MLPMixtureFamily": ["fashion_mnist", "mnist"],
                     "CNNMixtureFamily": ["fashion_mnist", "mnist", "cifar10"]}


def data_folders(spec: dict[str, Any], written_by_test: tuple[str, ...] = ()) -> list[str]:
    """The dataset folders under ``$L2L_DATA_DIR`` that a task-family spec (``class_path``/``init_args``, as in
    a config's ``model.task``) reads, e.g. ``["FashionMNIST", "MNIST"]``. A family with an explicit ``data_dir``
    reads none there; so do the datasets in ``written_by_test`` (names such as ``"cifar10"``: the test writes a
    tiny copy of its own). STN families read MNIST (their affNIST ``.mat`` files with ``source: mat``)."""
    from l2l_torch.data import DATASETS

    cls = spec["class_path"].rsplit(".", 1)[-1]
    init = spec.get("init_args") or {}
    if cls == "FamilyMixture":
        found = [f for fam in init.get("families", []) for f in data_folders(fam, written_by_test)]
        return sorted(set(found))
    if cls == "AugmentedFamily":
        return data_folders(init["family"], written_by_test)
    if init.get("data_dir"):
        return []
    if cls == "STNFamily":
        return ["affNIST"] if init.get("source") == "mat" else ["MNIST"]
    if cls in _DEFAULT_DATASETS:
        names = init.get("datasets") or ([init["dataset"]] if "dataset" in init else _DEFAULT_DATASETS[cls])
        return sorted({DATASETS[d].folder for d in names if d not in written_by_test})
    return []


def config_params(tasks: list[str], written_by_test: tuple[str, ...] = ()) -> list:
    """Config names (e.g. ``available_tasks()``) as pytest params, each marked :func:`needs_data` with the
    dataset folders its task family reads (see :func:`data_folders`; the ``data:`` section's settings count as the
    family's, as in ``train.py``)."""
    from l2l_torch.cli import load_config

    def family_spec(config: dict[str, Any]) -> dict[str, Any]:
        spec, data = config["model"]["task"], (config.get("data") or {}).get("init_args") or {}
        return {**spec, "init_args": {**data, **(spec.get("init_args") or {})}}

    return [pytest.param(t, marks=needs_data(*data_folders(family_spec(load_config(t)), written_by_test)))
            for t in tasks]


def smoke_train(task: str, out: Path, *extra: str) -> Path:
    """Run ``train.py --task TASK`` with ``fast_dev_run`` (1 meta-step of a 3-step truncation, 1 short
    validation) in-process.

    Returns the output folder.
    """
    import train

    train.main(["--task", task, "--out", str(out), "--trainer.fast_dev_run", "true",
                "--model.val_tasks", "1", "--model.val_horizon", "2", "--model.tasks_per_step", "1",
                "--model.truncation.unroll", "3", "--model.truncation.horizon", "6", "--model.truncation.min_unroll", "null", *extra])
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


def small_fashion_mnist_mlps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """MLPs 784-6-10 on a 300-image subset of Fashion-MNIST from :data:`SHARED_DATA`, batch 8, float32 (the shipped kind
    of task, small), with the decoded cache under ``tmp_path`` and no downloads."""
    from l2l_torch.tasks.image_classification import ImageClassificationFamily

    monkeypatch.setenv("L2L_CACHE_DIR", str(tmp_path / "l2l_cache"))
    monkeypatch.setenv("L2L_OFFLINE", "1")
    return ImageClassificationFamily(dataset="fashion_mnist", model="mlp", hidden=[6], subset=300, batch_size=8,
                                     data_dir=str(SHARED_DATA))


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
