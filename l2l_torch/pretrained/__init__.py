"""Learned optimizers shipped with l2l_torch (package data).

Each entry is a pair of files in this folder: ``NAME.pt`` (the versioned learned-optimizer
format of :mod:`l2l_torch.checkpoint`) and ``NAME.json`` (what it was trained on, its horizon and
a one-line summary of its measured results). Entries are added or refreshed from an evaluated
results folder, never typed by hand::

    python scripts/add_pretrained.py research/experiments/quadratic            # -> l2l_torch/pretrained/quadratic.*

The folder must hold ``optimizer.pt`` (from ``train.py``) and ``results.json`` (from
``evaluate.py``); the summary line is built from ``results.json``.

Example:
    >>> from l2l_torch import LearnedOptimizer, list_pretrained
    >>> sorted(list_pretrained())                        # doctest: +SKIP
    ['quadratic']
    >>> opt = LearnedOptimizer(model.parameters(), pretrained="quadratic")   # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent


def list_pretrained(folder: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """The shipped learned optimizers: ``{name: {"trained_on", "horizon", "summary", ...}}``."""
    out = {}
    for meta in sorted(Path(folder or PACKAGE_DIR).glob("*.json")):
        if meta.with_suffix(".pt").is_file():
            out[meta.stem] = json.loads(meta.read_text())
    return out


def pretrained_path(name: str, folder: str | os.PathLike | None = None) -> Path:
    """Path of the shipped learned optimizer ``name``.

    Raises:
        ValueError: no such name (the message lists the available ones).
    """
    available = list_pretrained(folder)
    if name not in available:
        raise ValueError(f"unknown pretrained optimizer {name!r}; available: "
                         f"{', '.join(sorted(available)) or 'none'}")
    return Path(folder or PACKAGE_DIR) / f"{name}.pt"


def _fmt(stat: Any) -> str:
    if not isinstance(stat, dict) or stat.get("mean") is None or not math.isfinite(stat["mean"]):
        return "diverged"
    return f"{stat['mean']:.3g} ± {stat['std']:.2g}"


def trained_on(task: Any) -> str:
    """``{"class": "QuadraticFamily", "name": "quadratic", "dim": 10}`` -> ``"QuadraticFamily(dim=10)"``."""
    if not isinstance(task, dict):
        return str(task)
    args = ", ".join(f"{k}={v}" for k, v in task.items() if k not in ("class", "name"))
    return f"{task.get('class', task.get('name', '?'))}({args})"


def lineage(path: str | os.PathLike, meta: dict[str, Any], max_stages: int = 50) -> list[dict[str, Any]]:
    """The meta-training stages behind the optimizer file ``path`` (whose metadata is ``meta``), last first:
    ``{"file", "trained_on", "horizon", "global_step"}`` per stage, following each stage's
    ``warm_started_from``. The chain ends at a fresh start, at a file that is no longer there
    (``{"file": ..., "missing": True}``), or at a file written before runs recorded their warm start
    (``"warm_started_from": "not recorded"``)."""
    from l2l_torch.checkpoint import read_checkpoint

    stages: list[dict[str, Any]] = []
    while len(stages) < max_stages:
        stage = {"file": str(path), "trained_on": trained_on(meta.get("task")), "horizon": meta.get("horizon"),
                 "global_step": meta.get("global_step")}
        stages.append(stage)
        if "warm_started_from" not in meta:
            stage["warm_started_from"] = "not recorded"
            break
        path = meta["warm_started_from"]
        if path is None:
            break
        if not Path(path).is_file():
            stages.append({"file": str(path), "missing": True})
            break
        meta = read_checkpoint(path)["meta"]  # (the metadata only: no network is built)
    return stages


def summary_from_results(results: dict[str, Any]) -> str:
    """One line from an ``evaluate.py`` ``results.json``: the learned optimizer's final training loss
    (and test accuracy where measured) against the best baseline, over the held-out instances."""
    opts = results["optimizers"]
    learned = [n for n, o in opts.items() if o.get("lr") is None]
    if not learned:
        raise ValueError("results.json has no learned optimizer (an entry with lr null)")
    name = learned[0]
    lo = opts[name]

    def score(o: dict[str, Any]) -> float:
        s = o.get("final_loss") or {}
        m = s.get("mean")
        return m if isinstance(m, (int, float)) and math.isfinite(m) else math.inf

    baselines = {n: o for n, o in opts.items() if n != name}
    overrides = results.get("overrides") or {}
    task = results.get("task", "?") + (f" ({', '.join(f'{k}={v}' for k, v in overrides.items())})" if overrides else "")
    line = (f"{task}, {results.get('steps', '?')} steps, {results.get('seeds', '?')} held-out "
            f"instances: final train loss {_fmt(lo.get('final_loss'))}")
    if "test_accuracy" in lo:
        line += f", test accuracy {_fmt(lo['test_accuracy'])}"
    line += f", diverged {lo.get('diverged', 0)}"
    if baselines:
        best = min(baselines, key=lambda n: score(baselines[n]))
        b = baselines[best]
        line += f"; best baseline {best} (lr {b.get('lr')}): {_fmt(b.get('final_loss'))}"
        if "test_accuracy" in b:
            line += f", test accuracy {_fmt(b['test_accuracy'])}"
    return line


def add_pretrained(results_dir: str | os.PathLike, name: str | None = None,
                   folder: str | os.PathLike | None = None,
                   evaluation: str | os.PathLike | None = None) -> dict[str, Any]:
    """Add (or refresh) the entry ``name`` from ``results_dir/optimizer.pt`` and ``results.json``.

    ``name`` defaults to the folder's name. ``evaluation`` is the folder whose ``results.json`` gives the
    summary when it is not ``results_dir`` itself (an optimizer evaluated in subfolders, one per task).
    The checkpoint is validated (format, version, architecture, finite weights) before it is copied.
    Returns the entry's metadata.

    Raises:
        FileNotFoundError: a file is missing. CheckpointError: the optimizer file is unusable.
    """
    import torch

    from l2l_torch.checkpoint import load_learned_optimizer

    results_dir = Path(results_dir)
    name = name or results_dir.resolve().name
    evaluation = Path(evaluation) if evaluation is not None else results_dir
    ckpt, res = results_dir / "optimizer.pt", evaluation / "results.json"
    for f in (ckpt, res):
        if not f.is_file():
            raise FileNotFoundError(f"{f} not found (run train.py and evaluate.py for this task first)")
    lopt, meta = load_learned_optimizer(ckpt)
    if not all(torch.isfinite(p).all() for p in lopt.parameters()):
        raise ValueError(f"{ckpt} has non-finite weights")
    results = json.loads(res.read_text())
    entry = {"name": name, "trained_on": trained_on(meta.get("task")), "horizon": meta.get("horizon"),
             "lineage": lineage(ckpt, meta),
             "arch": lopt.arch_name, "config": lopt.config(), "summary": summary_from_results(results),
             "state_bytes_per_param": lopt.state_bytes_per_param(), "source": str(results_dir),
             "evaluation": str(evaluation), "evaluation_command": results.get("command")}
    folder = Path(folder or PACKAGE_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.pt.tmp"
    shutil.copyfile(ckpt, tmp)
    os.replace(tmp, folder / f"{name}.pt")
    (folder / f"{name}.json").write_text(json.dumps(entry, indent=1, default=str) + "\n")
    return entry


__all__ = ["list_pretrained", "pretrained_path", "add_pretrained", "lineage", "summary_from_results", "PACKAGE_DIR"]
