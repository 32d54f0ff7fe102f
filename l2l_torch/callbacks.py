"""Callbacks: export of the best learned optimizer during meta-training, a progress bar over meta-steps, and the
warped digits of a held-out STN in TensorBoard."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Timer, TQDMProgressBar

from l2l_torch.checkpoint import save_learned_optimizer, write_meta_json


class ExportBestOptimizer(L.Callback):
    """After each validation, write the learned optimizer to ``dirpath/optimizer.pt`` if its
    validation metric (on held-out task instances) is the best so far.

    This is checkpoint selection by validation: a learned optimizer meta-trained too long can
    get worse ("unlearn"), so the exported file is the best one seen, not the last one. The file
    uses the versioned format of :mod:`l2l_torch.checkpoint`; ``optimizer.json`` beside it says
    which meta-step was selected (``global_step``, the same number as the ``best-step=N.ckpt``
    checkpoint of that validation) and its validation figures (``"validated": true``).

    When meta-training is interrupted (:meth:`export_on_interrupt`) before any validation, the current
    optimizer is exported instead, marked ``"validated": false`` and ``"selected_by": "interrupted before any
    validation"``: no validation is run then (it can take minutes, and the user asked to stop), and the file
    does not pretend to have been selected. The first validation of a resumed run replaces it.

    Args:
        dirpath: output folder (defaults to the trainer's log dir).
        monitor: metric to minimise.
    """

    def __init__(self, dirpath: str | None = None, monitor: str = "val/loss") -> None:
        self.dirpath, self.monitor = dirpath, monitor
        self.best = math.inf
        self._before_fit: dict[str, Any] | None = None  # the selection of a validation before meta-training

    def path(self, trainer: L.Trainer) -> Path:
        return Path(self.dirpath or trainer.log_dir or ".") / "optimizer.pt"

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None or not math.isfinite(float(value)) or float(value) >= self.best:
            return
        self.best = float(value)
        selection = {"validated": True, "selected_by": self.monitor, "selected_value": self.best,
                     "metrics": {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}}
        self._before_fit = selection if trainer.state.fn != "fit" else None
        self._write(pl_module, selection, trainer)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write again an optimizer selected by a validation before meta-training (the warm start, meta-step 0):
        its metadata then names the meta-training's settings, such as ``meta_lr``, that exist only once fit has
        set up the meta-optimizer. Its weights have not changed since."""
        if self._before_fit is not None and trainer.is_global_zero:
            self._write(pl_module, self._before_fit, trainer)
        self._before_fit = None

    def export_on_interrupt(self, trainer: L.Trainer, pl_module: L.LightningModule) -> str:
        """Called when meta-training stops on a signal at a meta-step boundary. Returns what ``optimizer.pt``
        now holds, in words."""
        path = self.path(trainer)
        if math.isfinite(self.best):
            return f"{path}: the best validated optimizer so far ({self.monitor} {self.best:.4g})"
        if trainer.is_global_zero:
            self._write(pl_module, {"validated": False, "selected_by": "interrupted before any validation",
                                    "selected_value": None, "metrics": {}}, trainer)
        return f"{path}: the optimizer at meta-step {trainer.global_step}, NOT validated (no validation ran yet)"

    def _write(self, pl_module: L.LightningModule, selection: dict[str, Any], trainer: L.Trainer) -> None:
        meta = {**pl_module.describe(), **selection}
        path = self.path(trainer)
        save_learned_optimizer(pl_module.lopt, path, meta)
        write_meta_json(path, meta)

    def state_dict(self):
        return {"best": self.best}

    def load_state_dict(self, state_dict):
        self.best = state_dict.get("best", math.inf)


def _clock(seconds: float) -> str:
    """``H:MM:SS`` (or ``M:SS`` under an hour)."""
    s = max(0, int(round(seconds)))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


class MetaStepProgressBar(TQDMProgressBar):
    """Lightning's tqdm progress bar, over the whole run instead of per "epoch".

    The training bar counts meta-steps up to ``trainer.max_steps`` (starting at the resumed step), and
    shows the time budget (``trainer.max_time``) as ``time used/budget``. Lightning's "epochs" here are
    only the ``val_every`` meta-steps between validations, so its default "Epoch N: k/val_every" bar told
    a user nothing about how far the run is. The validation bar says what it does.
    """

    def __init__(self, refresh_rate: int = 1) -> None:
        super().__init__(refresh_rate=refresh_rate, leave=False)

    @staticmethod
    def _max_steps(trainer: L.Trainer) -> int | None:
        m = trainer.max_steps
        return m if m is not None and m > 0 else None

    @staticmethod
    def _budget(trainer: L.Trainer) -> str | None:
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        remaining = None if timer is None else timer.time_remaining()
        if remaining is None:
            return None
        used = timer.time_elapsed()
        return f"{_clock(used)}/{_clock(used + remaining)}"

    def init_train_tqdm(self):
        bar = super().init_train_tqdm()
        bar.set_description("meta-step")
        bar.unit = "step"  # the rate reads "step/s"
        return bar

    def on_train_start(self, trainer: L.Trainer, *_: Any) -> None:
        self.train_progress_bar = self.init_train_tqdm()
        self.train_progress_bar.reset(total=self._max_steps(trainer))
        self.train_progress_bar.initial = trainer.global_step  # a resumed run starts where it stopped
        self.train_progress_bar.n = trainer.global_step
        self.train_progress_bar.refresh()

    def on_train_epoch_start(self, trainer: L.Trainer, *_: Any) -> None:
        pass  # one bar for the whole run: no reset per "epoch"

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        bar = self._train_progress_bar
        n = trainer.global_step
        if bar is not None and not bar.disable and self._should_update(n, bar.total):
            bar.n = n
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=True)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._train_progress_bar is not None and not self._train_progress_bar.disable:
            self._train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)  # the TensorBoard version folder: in the summary at the end, not here
        budget = self._budget(trainer) if trainer.state.fn == "fit" else None
        return {"time": budget, **items} if budget else items

    @property
    def validation_description(self) -> str:
        return "validating"

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                                  batch_idx: int, dataloader_idx: int = 0) -> None:
        super().on_validation_batch_start(trainer, pl_module, batch, batch_idx, dataloader_idx)
        if batch_idx == 0 and self._val_progress_bar is not None:
            what = "sanity check" if trainer.sanity_checking else f"validating meta-step {trainer.global_step}"
            self.val_progress_bar.set_description(f"{what} (held-out tasks)")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        # a stop (Ctrl-C) leaves the bars where they were: end their lines, so that what follows starts on its own
        for bar in (self._val_progress_bar, self._train_progress_bar):
            if bar is not None and not bar.disable:
                bar.close()


class LogSTNGrid(L.Callback):
    """After each validation of meta-training, train one held-out STN (the first validation instance) with the
    current learned optimizer and log to TensorBoard: its warped validation digits (``val/stn_grid``: the trained
    digit's ``val`` split and ``val<d>`` of each other test digit, validation images, never the test digits that
    ``evaluate.py`` scores), the SSIM and the foreground-mass ratio of the training digits and of each validation
    set (``val/stn/<split>_ssim``, ``val/stn/<split>_mass_ratio``; for monitoring, selection uses ``val/loss``
    alone), and a histogram of the ``log10 |update|`` of every coordinate at every step (``val/stn_log10_update``).

    Args:
        steps: optimizee steps of that run (default: the validation horizon of that instance, as validation trains it).
        n: images per row.
    """

    def __init__(self, steps: int | None = None, n: int = 8) -> None:
        self.steps, self.n = steps, n

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        import torch

        from l2l_torch.optim import LearnedOptimizer
        from l2l_torch.tasks.base import VAL_SEED_OFFSET
        from l2l_torch.training import UpdateRecorder, train_optimizee

        hp = pl_module.hparams
        seed = VAL_SEED_OFFSET + hp.get("val_seed", 0)  # the first validation instance
        task = pl_module.task.sample(seed)
        if not hasattr(task, "visualize"):
            return
        steps = self.steps or hp.get("val_horizon") or pl_module.truncation.horizon_of(seed)  # as validation trains it
        rec = UpdateRecorder()
        with torch.enable_grad():
            r = train_optimizee(task, lambda g: LearnedOptimizer(g, lopt=pl_module.lopt), steps, seed, keep_params=True,
                                record_updates=rec)
        if r.diverged:
            return
        splits = task.validation_splits
        img = task.visualize(r.params, r.buffers, self.n, splits=splits)
        figures = {}
        for split in ("train", *splits):  # train and val are among the final metrics already; the others are not
            ev = ({m: r.final[f"{split}_{m}"] for m in ("ssim", "mass_ratio")} if f"{split}_ssim" in r.final
                  else task.evaluate(r.params, r.buffers, split))
            figures.update({f"{split}_{m}": ev[m] for m in ("ssim", "mass_ratio")})
        hist = rec.to_dict()
        for logger in trainer.loggers:
            exp = getattr(logger, "experiment", None)
            if hasattr(exp, "add_image"):
                exp.add_image("val/stn_grid", img, global_step=trainer.global_step)
            if hasattr(exp, "add_scalar"):
                for k, v in figures.items():
                    if math.isfinite(v):
                        exp.add_scalar(f"val/stn/{k}", v, global_step=trainer.global_step)
            if hasattr(exp, "add_histogram_raw") and sum(hist["counts"]):
                _add_log_histogram(exp, "val/stn_log10_update", hist, trainer.global_step)


def _add_log_histogram(exp: Any, tag: str, hist: dict[str, Any], step: int) -> None:
    """A histogram of :class:`~l2l_torch.training.UpdateRecorder`'s binned ``log10 |update|`` (exact zeros left
    out) as TensorBoard's raw histogram; its sums use the bins' centres."""
    from l2l_torch.plots import histogram_edges  # (matplotlib only when a histogram is written)

    edges, counts = histogram_edges(hist), hist["counts"]
    centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
    used = [i for i, c in enumerate(counts) if c]
    exp.add_histogram_raw(tag, min=edges[used[0]], max=edges[used[-1] + 1], num=sum(counts),
                          sum=sum(c * x for c, x in zip(counts, centres)),
                          sum_squares=sum(c * x * x for c, x in zip(counts, centres)),
                          bucket_limits=edges[1:], bucket_counts=counts, global_step=step)
