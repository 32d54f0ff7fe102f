"""Shared command-line plumbing for ``train.py``, ``evaluate.py`` and ``python -m l2l_torch.plots``: task
lookup, ``--set`` overrides, loading a learned optimizer for a task, and clean errors."""

from __future__ import annotations

import argparse
import difflib
import importlib
import math
import re
import sys
from collections.abc import Callable
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


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors (a missing or malformed flag) are one ``error: ...`` line and
    exit code 2, like every other error a user causes (:func:`fail`), instead of the usage text and a line."""

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (--help lists the options)")


# ---------------------------------------------------------------- range-checked numbers
def _number(kind: type, text: Any) -> int | float:
    if isinstance(text, bool):
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
    try:
        x = kind(text)
        if kind is int and isinstance(text, float) and text != x:
            raise ValueError
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                         f"got {text!r}") from None
    if kind is float and not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return x


def _bounded(kind: type, ok: Callable[[Any], bool], must: str, doc: str) -> Callable[[Any], Any]:
    """An argparse type: a number of ``kind`` for which ``ok`` holds, else "must be ``must``, got ..."."""

    def check(text: Any):
        x = _number(kind, text)
        if not ok(x):
            raise argparse.ArgumentTypeError(f"must be {must}, got {x if kind is int else format(x, 'g')}")
        return x

    check.__doc__ = f"argparse type: {doc}."
    return check


positive_int = _bounded(int, lambda x: x >= 1, "a positive integer", "an integer >= 1")
nonnegative_int = _bounded(int, lambda x: x >= 0, "an integer >= 0", "an integer >= 0")
positive_float = _bounded(float, lambda x: x > 0, "a number > 0", "a finite number > 0")
nonnegative_float = _bounded(float, lambda x: x >= 0, "a number >= 0", "a finite number >= 0")
fraction = _bounded(float, lambda x: 0.0 <= x < 1.0, "in [0, 1)", "a number in [0, 1) (e.g. a decay)")


def steps_or_unlimited(text: Any) -> int:
    """argparse type: a number of steps >= 0, or -1 for no limit (Lightning's ``max_steps``; 0 trains nothing,
    e.g. to only validate and export a warm start)."""
    x = _number(int, text)
    if x < -1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0 (or -1: no limit), got {x}")
    return x


_DURATION = re.compile(r"^(\d+):(\d{1,2}):(\d{1,2}):(\d{1,2})$")


def duration(text: Any) -> str:
    """argparse type: a time budget ``DD:HH:MM:SS`` (Lightning's ``max_time``), not zero."""
    m = _DURATION.match(str(text).strip())
    if not m:
        raise argparse.ArgumentTypeError(f"expected a duration DD:HH:MM:SS (e.g. 00:01:30:00 for 1 h 30 min), "
                                         f"got {text!r}")
    d, h, mi, s = (int(g) for g in m.groups())
    if h > 23 or mi > 59 or s > 59 or d + h + mi + s == 0:
        raise argparse.ArgumentTypeError(f"expected a non-zero duration DD:HH:MM:SS with hours < 24 and "
                                         f"minutes, seconds < 60, got {text!r}")
    return str(text).strip()


def check_value(flag: str, value: Any, kind: Callable[[Any], Any]) -> Any:
    """``kind(value)`` (one of the argparse types above) for a value that came from elsewhere (a config file,
    LightningCLI); a :class:`UserError` naming ``flag`` when it is out of range."""
    try:
        return kind(value)
    except argparse.ArgumentTypeError as e:
        raise UserError(f"{flag}: {e}") from None


# ---------------------------------------------------------------- tasks
def available_tasks(config_dir: Path = CONFIG_DIR) -> list[str]:
    return sorted(p.stem for p in config_dir.glob("*.yaml"))


#: a source checkout's research configs, found by name too (``research/experiments/<experiment>/<name>.yaml``)
RESEARCH_DIR = Path(__file__).resolve().parent.parent / "research" / "experiments"
#: an unknown-task error lists every task when there are at most this many, else only the close matches
LIST_TASKS_UP_TO = 20


def unknown_task_message(task: str, config_dir: Path = CONFIG_DIR) -> str:
    """One line: the unknown task, the close matches ("did you mean"), and the tasks (when they are few)."""
    tasks = available_tasks(config_dir)
    msg = f"unknown task {task!r}"
    close = difflib.get_close_matches(task, tasks, n=3, cutoff=0.6)
    if close:
        msg += f"; did you mean {' or '.join(repr(t) for t in close)}?"
    if len(tasks) <= LIST_TASKS_UP_TO:
        return msg + f" (tasks: {', '.join(tasks)})"
    return msg + f" ({len(tasks)} tasks: the *.yaml files in {config_dir}; --help lists them)"


def config_path(task: str, config_dir: Path = CONFIG_DIR) -> Path:
    """The config of ``task``: ``configs/<task>.yaml``; else a path to a YAML file; else, in a source checkout,
    the research config ``research/experiments/*/<task>.yaml``. A :class:`UserError` names the closest tasks."""
    path = config_dir / f"{task}.yaml"
    if path.is_file():
        return path
    if task.endswith((".yaml", ".yml")) and Path(task).is_file():
        return Path(task)
    research = sorted(RESEARCH_DIR.glob(f"*/{task}.yaml")) if "/" not in task else []
    if len(research) == 1:
        return research[0]
    raise UserError(unknown_task_message(task, config_dir))


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


def config_horizon(task: str) -> int:
    """The optimizee horizon that ``task``'s config meta-trains on (``model.truncation``), the default number of
    steps of an evaluation."""
    from l2l_torch.truncation import TruncationSchedule

    truncation = load_config(task).get("model", {}).get("truncation") or {}
    return int((truncation.get("init_args") or {}).get("horizon", TruncationSchedule().horizon))


def task_family_from_config(task: str, overrides: dict[str, Any] | None = None):
    """The task family that ``configs/<task>.yaml`` meta-trains on (``model.task``), with init-arg
    overrides (e.g. a different batch size or activation for a generalisation test), fed by the config's
    ``data:`` section when it has one (as in ``train.py``). Checks the data files (a :class:`UserError` when
    they are missing or damaged)."""
    from l2l_torch.data import DataError

    config = load_config(task)
    spec = config.get("model", {}).get("task")
    if spec is None:
        raise UserError(f"{config_path(task)} has no model.task section")
    spec = {**spec, "init_args": {**(spec.get("init_args") or {}), **(overrides or {})}}
    try:
        family = instantiate(spec)
        if config.get("data"):
            # an override of a data setting that data: sets too applies there as well (else it would conflict)
            keys, data_args = getattr(family, "data_keys", {}), dict(config["data"].get("init_args") or {})
            data_args.update({keys[k]: v for k, v in (overrides or {}).items() if keys.get(k) in data_args})
            family.attach(instantiate({**config["data"], "init_args": data_args}))
        family.prepare_data()
    except DataError as e:
        raise UserError(str(e)) from None
    return family


def parse_overrides(pairs: list[str], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """``--set KEY=VALUE`` arguments as task init-arg overrides (values parsed as YAML), on top of ``base``."""
    overrides = dict(base or {})
    for kv in pairs:
        if "=" not in kv:
            raise UserError(f"--set expects KEY=VALUE, got {kv!r}")
        k, v = kv.split("=", 1)
        overrides[k] = yaml.safe_load(v)
    return overrides


def load_checkpoint(checkpoint: str):
    """Load the learned optimizer at ``checkpoint`` onto the device (CUDA when present); exits with one
    sentence (:func:`fail`) when the file is missing or unreadable. Cheap: call it before loading a task's
    data, so that a wrong path fails at once. Returns ``(lopt, meta, device)``."""
    import torch

    from l2l_torch.checkpoint import CheckpointError, load_learned_optimizer

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        lopt, meta = load_learned_optimizer(checkpoint, map_location=device)
    except (FileNotFoundError, CheckpointError) as e:
        fail(str(e))
    return lopt, meta, device


def check_for_task(lopt: Any, meta: dict[str, Any], device: Any, checkpoint: str, task: str, family: Any) -> None:
    """Move ``family`` to ``device`` and check that ``lopt`` (from ``checkpoint``) can train the task's
    parameters; exits with one sentence (:func:`fail`) when it cannot."""
    from l2l_torch.checkpoint import CheckpointError, check_compatible
    from l2l_torch.data import DataError

    family.to(device)
    try:
        kinds = family.sample(0).param_kinds()  # (loads the task's data)
    except DataError as e:
        fail(str(e))
    try:
        check_compatible(lopt, meta, kinds)
    except CheckpointError as e:
        fail(f"checkpoint {checkpoint} cannot optimize task {task!r}: {e}")


def load_for_task(checkpoint: str, task: str, family: Any):
    """:func:`load_checkpoint` then :func:`check_for_task`. Returns ``(lopt, meta, device)``."""
    lopt, meta, device = load_checkpoint(checkpoint)
    check_for_task(lopt, meta, device, checkpoint, task, family)
    return lopt, meta, device
