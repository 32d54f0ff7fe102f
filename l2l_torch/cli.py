"""Shared command-line plumbing for ``train.py``, ``evaluate.py`` and ``python -m l2l_torch.plots``: task
lookup, ``--set`` overrides, loading a learned optimizer for a task, and clean errors."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any, NoReturn

import yaml


def _config_dir() -> Path:
    """The shipped configs: the repository's ``configs/`` folder, installed as ``l2l_torch.configs``."""
    import l2l_torch.configs

    return Path(l2l_torch.configs.__file__).resolve().parent


CONFIG_DIR = _config_dir()


class UserError(Exception):
    """An error caused by the user's input; reported as one sentence, without a traceback."""


def fail(msg: str, code: int = 2) -> NoReturn:
    print(f"error: {msg}", file=sys.stderr)
    raise SystemExit(code)


def available_tasks(config_dir: Path = CONFIG_DIR) -> list[str]:
    return sorted(p.stem for p in config_dir.glob("*.yaml"))


#: a source checkout's research configs, found by name too (``research/experiments/<experiment>/<name>.yaml``)
RESEARCH_DIR = Path(__file__).resolve().parent.parent / "research" / "experiments"


def config_path(task: str, config_dir: Path = CONFIG_DIR) -> Path:
    """The config of ``task``: ``configs/<task>.yaml``; else a path to a YAML file; else, in a source checkout,
    the research config ``research/experiments/*/<task>.yaml``. A :class:`UserError` names the tasks that exist."""
    path = config_dir / f"{task}.yaml"
    if path.is_file():
        return path
    if task.endswith((".yaml", ".yml")) and Path(task).is_file():
        return Path(task)
    research = sorted(RESEARCH_DIR.glob(f"*/{task}.yaml")) if "/" not in task else []
    if len(research) == 1:
        return research[0]
    raise UserError(f"unknown task {task!r}; available tasks: {', '.join(available_tasks(config_dir))}")


def instantiate(spec: Any) -> Any:
    """Build objects from a LightningCLI-style ``{class_path, init_args}`` spec, recursively."""
    if isinstance(spec, dict) and "class_path" in spec:
        module, _, name = spec["class_path"].rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        return cls(**{k: instantiate(v) for k, v in (spec.get("init_args") or {}).items()})
    if isinstance(spec, dict):
        return {k: instantiate(v) for k, v in spec.items()}
    if isinstance(spec, list):
        return [instantiate(v) for v in spec]
    return spec


def load_config(task: str) -> dict[str, Any]:
    return yaml.safe_load(config_path(task).read_text()) or {}


def task_family_from_config(task: str, overrides: dict[str, Any] | None = None):
    """The task family that ``configs/<task>.yaml`` meta-trains on (``model.task``), with init-arg
    overrides (e.g. a different batch size or activation for a generalisation test)."""
    spec = load_config(task).get("model", {}).get("task")
    if spec is None:
        raise UserError(f"{config_path(task)} has no model.task section")
    spec = {**spec, "init_args": {**(spec.get("init_args") or {}), **(overrides or {})}}
    return instantiate(spec)


def parse_overrides(pairs: list[str], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """``--set KEY=VALUE`` arguments as task init-arg overrides (values parsed as YAML), on top of ``base``."""
    overrides = dict(base or {})
    for kv in pairs:
        if "=" not in kv:
            raise UserError(f"--set expects KEY=VALUE, got {kv!r}")
        k, v = kv.split("=", 1)
        overrides[k] = yaml.safe_load(v)
    return overrides


def load_for_task(checkpoint: str, task: str, family: Any):
    """Load the learned optimizer at ``checkpoint`` onto the device (CUDA when present), move ``family``
    there and check that the optimizer can train the task's parameters. Exits with one sentence
    (:func:`fail`) when it cannot. Returns ``(lopt, meta, device)``."""
    import torch

    from l2l_torch.checkpoint import CheckpointError, check_compatible, load_learned_optimizer

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        lopt, meta = load_learned_optimizer(checkpoint, map_location=device)
    except (FileNotFoundError, CheckpointError) as e:
        fail(str(e))
    family.to(device)
    try:
        check_compatible(lopt, meta, family.sample(0).param_kinds())
    except CheckpointError as e:
        fail(f"checkpoint {checkpoint} cannot optimize task {task!r}: {e}")
    return lopt, meta, device
