"""Crash safety: checkpoints written atomically, and a log of every (re)start of meta-training."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from l2l_torch.checkpoint import atomic_torch_save


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO that writes to a temporary file and renames it into place, so a
    process killed mid-write (SIGKILL included) leaves the previous checkpoint usable."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        atomic_torch_save(checkpoint, path)


def theta_digest(state_dict: dict[str, Any], prefix: str = "") -> str:
    """SHA-256 of the tensors of ``state_dict`` whose keys start with ``prefix`` (prefix stripped),
    in key order: equal digests mean bit-identical weights."""
    h = hashlib.sha256()
    for k in sorted(k for k in state_dict if k.startswith(prefix)):
        v = state_dict[k].detach().cpu().contiguous()
        h.update(k[len(prefix):].encode())
        h.update(str(v.dtype).encode())
        h.update(v.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class RestartLog(L.Callback):
    """Append one JSON line per start of ``fit`` to ``path`` (default ``OUT/restarts.jsonl``): the
    global step, the checkpoint resumed from and a digest of theta, so a resumed run can be checked
    against the checkpoint it claims to continue from (``research/tools/kill_resume.py`` does)."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        path = Path(self.path or Path(trainer.default_root_dir) / "restarts.jsonl")
        path.parent.mkdir(parents=True, exist_ok=True)
        rec = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "global_step": int(trainer.global_step),
               "ckpt_path": None if trainer.ckpt_path is None else str(trainer.ckpt_path),
               "theta_sha256": theta_digest(pl_module.state_dict(), "lopt."),
               "skipped": int(getattr(pl_module, "skipped", 0))}
        with open(path, "a") as f:
            f.write(json.dumps(rec) + "\n")


def check_resume_checkpoint(path: str | Path, lopt: Any) -> dict[str, Any]:
    """Check that ``path`` is a Lightning checkpoint of a meta-training run with the same learned-optimizer
    architecture as ``lopt``, before Lightning loads it. Read with ``weights_only=True``: nothing is
    unpickled. Returns the checkpoint's ``"l2l"`` section.

    Raises:
        UserError: a missing, unreadable, truncated or foreign file, or another architecture.
    """
    from l2l_torch.checkpoint import CheckpointError, load_lightning_checkpoint
    from l2l_torch.cli import UserError

    path = Path(path)
    try:
        ckpt = load_lightning_checkpoint(
            path, "a learned-optimizer file, not a training checkpoint; --ckpt_path takes a "
                  "Lightning checkpoint (runs/TASK/checkpoints/*.ckpt)")
    except (FileNotFoundError, CheckpointError) as e:
        raise UserError(str(e)) from None
    extra = ckpt.get("l2l")
    if not isinstance(extra, dict) or "lopt_arch" not in extra:
        raise UserError(f"{path} is not a checkpoint of a l2l_torch meta-training run")
    ours = {"arch": lopt.arch_name, **lopt.config()}
    theirs = {"arch": extra["lopt_arch"],
              **_with_defaults(extra["lopt_arch"], dict(extra.get("lopt_config") or {}), set(ours))}
    diff = [f"{k} {theirs.get(k)!r} vs {ours.get(k)!r}" for k in sorted(set(ours) | set(theirs))
            if theirs.get(k) != ours.get(k)]
    if diff:
        raise UserError(f"{path} holds another learned-optimizer architecture (checkpoint vs config: "
                        f"{', '.join(diff)}); resume with the same --model.lopt settings")
    return extra


def _with_defaults(arch: str, config: dict[str, Any], keys: set[str]) -> dict[str, Any]:
    """``config`` of a stored optimizer plus the constructor defaults of the options among ``keys`` that it
    does not name: an option added to the architecture after the checkpoint was written has its default there."""
    import inspect

    from l2l_torch.learned_optimizers import REGISTRY

    cls = REGISTRY.get(arch)
    if cls is None:
        return config
    defaults = {k: list(p.default) if isinstance(p.default, tuple) else p.default
                for k, p in inspect.signature(cls.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty and k in keys}
    return {**defaults, **config}
