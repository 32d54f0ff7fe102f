"""Crash safety: checkpoints written atomically, a log of every (re)start of meta-training, and a clean stop
(checkpoint and exported optimizer) on Ctrl-C or SIGTERM."""

from __future__ import annotations

import hashlib
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from l2l_torch.checkpoint import (
    CheckpointError,
    atomic_torch_save,
    load_lightning_checkpoint,
    read_learned_optimizer,
)


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


class Interrupted(BaseException):  # noqa: N818 (it is a stop, not an error)
    """Meta-training stopped on a signal (``signum``) at a meta-step boundary; raised by :class:`SaveOnStop`
    after the checkpoint was written. Not an ``Exception``, so that no ``except Exception`` swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class SaveOnStop(Checkpoint):
    """Write the checkpoint ``checkpoint_path`` (``OUT/checkpoints/last.ckpt``, resumable with ``--ckpt_path
    last``) whenever meta-training stops, not only every ``--checkpoint_every`` meta-steps:

    - at its end (``max_steps``, ``max_time``), whatever the step (``ModelCheckpoint(save_last=True)`` keeps the
      last scheduled one then);
    - on Ctrl-C (SIGINT) or SIGTERM: it finishes the meta-step in progress, writes the checkpoint, exports the
      learned optimizer (``export.export_on_interrupt``: the best validated one so far, or the current one
      marked as not validated) and stops by raising :class:`Interrupted`. A second signal stops at once,
      without saving.

    The stop is at a meta-step boundary, never inside one, so the checkpoint is as consistent as a scheduled one.
    Ctrl-C during a validation lets it finish (it is a candidate for ``optimizer.pt``), then stops; a second
    Ctrl-C then stops after the held-out task in progress and drops that validation (a resumed run does not
    repeat it: Lightning resumes after it). SIGTERM, which usually comes with a short grace period, drops it at
    once. Before meta-training starts (data loading, a sanity validation), a signal stops at once: there is
    nothing new to save.

    A :class:`lightning.pytorch.callbacks.Checkpoint`, so that Lightning runs its hooks after the
    ``ModelCheckpoint`` callbacks (list it after them): the checkpoints scheduled for the step are written first.
    """

    def __init__(self, checkpoint_path: str | Path, export: Any | None = None) -> None:
        self.checkpoint_path, self.export = Path(checkpoint_path), export
        self.signum: int | None = None  #: the signal that asked for a stop
        self.saved: dict[str, Any] | None = None  #: what the stop wrote (``step``, ``checkpoint``, ``optimizer``)
        self.hard_stop = False  #: a second signal (or one before meta-training) stopped the run without saving
        self._armed = self._validating = self._drop_validation = False
        self._trainer: L.Trainer | None = None
        self._previous: dict[int, Any] = {}

    # ---------------------------------------------------------------- signal handling
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._trainer, self.signum, self.saved, self.hard_stop = trainer, None, None, False
        self._validating = self._drop_validation = False
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set in the main thread
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous.setdefault(sig, signal.getsignal(sig))
            signal.signal(sig, self._handler)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._armed = True

    def restore_signal_handlers(self) -> None:
        """Put back the handlers found at the start of ``fit`` (Lightning's own teardown re-installs ours)."""
        self._armed = False
        if threading.current_thread() is threading.main_thread():
            for sig, handler in self._previous.items():
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def _handler(self, signum: int, frame: Any) -> None:
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        step = self._trainer.global_step if self._trainer is not None else 0
        if not self._armed or (self.signum is not None and (not self._validating or self._drop_validation)):
            self.hard_stop = True
            self.restore_signal_handlers()
            raise KeyboardInterrupt
        first, self.signum = self.signum is None, self.signum or signum
        if self._validating and (not first or signum != signal.SIGINT):
            self._drop_validation = True
            msg = (f"stopping after the held-out task in progress (dropping the validation of meta-step {step}), "
                   f"then saving {self.checkpoint_path} and the learned optimizer")
        elif self._validating:
            msg = (f"finishing the validation of meta-step {step} (it is a candidate for optimizer.pt), then saving "
                   f"{self.checkpoint_path} and the learned optimizer ({name} again: drop the validation and stop "
                   "after the held-out task in progress)")
        else:
            msg = (f"stopping after meta-step {step + 1}, then saving {self.checkpoint_path} and the learned "
                   f"optimizer ({name} again: stop at once, without saving)")
        print(f"\n{name}: {msg}", file=sys.stderr, flush=True)

    # ---------------------------------------------------------------- where the run stops
    def _fitting(self, trainer: L.Trainer) -> bool:
        return self._armed and trainer.state.fn == "fit" and not trainer.sanity_checking

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self.signum is not None and self._fitting(trainer):
            raise Interrupted(self.signum)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._validating = self._fitting(trainer)

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        total = trainer.num_val_batches[dataloader_idx] if trainer.num_val_batches else 0
        if self._drop_validation and self._fitting(trainer) and batch_idx + 1 < total:
            raise Interrupted(self.signum)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._validating = False
        if self.signum is not None and self._fitting(trainer):  # after ExportBestOptimizer and the ModelCheckpoints
            raise Interrupted(self.signum)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        stop = isinstance(exception, Interrupted) or (isinstance(exception, SIGTERMException) and self._armed)
        self._armed = False
        if not stop:
            return
        if self.signum is None:  # Lightning's own SIGTERM stop (e.g. on another DDP rank)
            self.signum = int(signal.SIGTERM)
        trainer.save_checkpoint(self.checkpoint_path, weights_only=False)
        optimizer = self.export.export_on_interrupt(trainer, pl_module) if self.export is not None else None
        self.saved = {"step": int(trainer.global_step), "checkpoint": str(self.checkpoint_path),
                      "optimizer": optimizer}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._armed = False
        if not trainer.fast_dev_run:
            trainer.save_checkpoint(self.checkpoint_path, weights_only=False)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.restore_signal_handlers()


class RunInfo(L.Callback):
    """Record in every checkpoint (``checkpoint["l2l_run"]``) the logger version (the TensorBoard
    ``tb/version_N`` folder) of the run, so that a resumed run keeps writing to the same folder
    (:func:`logger_version_to_resume`)."""

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        logger = trainer.logger
        checkpoint["l2l_run"] = {"logger_version": None if logger is None else logger.version}


def logger_version_to_resume(ckpt_path: str | Path, log_root: str | Path) -> int | str | None:
    """The logger version of the run that wrote ``ckpt_path`` (recorded by :class:`RunInfo`), or for a
    checkpoint written before that was recorded, the newest ``version_N`` folder in ``log_root``. ``None``
    when there is none (or the file is unreadable: :func:`check_resume_checkpoint` says why, later)."""
    try:
        info = torch.load(ckpt_path, map_location="cpu", weights_only=True).get("l2l_run") or {}
    except Exception:  # reported by check_resume_checkpoint
        return None
    if info.get("logger_version") is not None:
        return info["logger_version"]
    versions = [int(p.name.split("_", 1)[1]) for p in Path(log_root).glob("version_*")
                if p.is_dir() and p.name.split("_", 1)[1].isdigit()]
    return max(versions) if versions else None


def check_resume_checkpoint(path: str | Path, lopt: Any) -> dict[str, Any]:
    """Check that ``path`` is a Lightning checkpoint of a meta-training run with the same learned-optimizer
    architecture as ``lopt``, before Lightning loads it. Read with ``weights_only=True``: nothing is
    unpickled. The stored optimizer is rebuilt as :func:`~l2l_torch.checkpoint.read_learned_optimizer` rebuilds
    any (its configuration converted to the current form, options it predates at the values that reproduce it),
    so a run written before the configuration's form changed still resumes. Returns the checkpoint's ``"l2l"``
    section.

    Raises:
        UserError: a missing, unreadable, truncated or foreign file, weights that do not fit the architecture
            the checkpoint names, or another architecture than ``lopt``'s.
    """
    from l2l_torch.cli import UserError

    path = Path(path)
    try:
        ckpt = load_lightning_checkpoint(
            path, "a learned-optimizer file, not a training checkpoint; --ckpt_path takes a "
                  "Lightning checkpoint (runs/TASK/checkpoints/*.ckpt)")
        stored, _ = read_learned_optimizer(path)
    except (FileNotFoundError, CheckpointError) as e:
        raise UserError(str(e)) from None
    ours = {"arch": lopt.arch_name, **lopt.config()}
    theirs = {"arch": stored.arch_name, **stored.config()}
    diff = [f"{k} {theirs.get(k)!r} vs {ours.get(k)!r}" for k in sorted(set(ours) | set(theirs))
            if theirs.get(k) != ours.get(k)]
    if diff:
        raise UserError(f"{path} holds another learned-optimizer architecture (checkpoint vs config: "
                        f"{', '.join(diff)}); resume with the same --model.lopt settings")
    return ckpt["l2l"]
