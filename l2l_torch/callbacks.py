"""Callbacks: export of the best learned optimizer during meta-training."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning as L

from l2l_torch.checkpoint import save_learned_optimizer


class ExportBestOptimizer(L.Callback):
    """After each validation, write the learned optimizer to ``dirpath/optimizer.pt`` if its
    validation metric (on held-out task instances) is the best so far.

    This is checkpoint selection by validation: a learned optimizer meta-trained too long can
    get worse ("unlearn"), so the exported file is the best one seen, not the last one. The file
    uses the versioned format of :mod:`l2l_torch.checkpoint`; ``optimizer.json`` beside it says
    which meta-step was selected and its validation figures.

    Args:
        dirpath: output folder (defaults to the trainer's log dir).
        monitor: metric to minimise.
    """

    def __init__(self, dirpath: str | None = None, monitor: str = "val/loss") -> None:
        self.dirpath, self.monitor = dirpath, monitor
        self.best = math.inf

    def path(self, trainer: L.Trainer) -> Path:
        return Path(self.dirpath or trainer.log_dir or ".") / "optimizer.pt"

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None or not math.isfinite(float(value)) or float(value) >= self.best:
            return
        self.best = float(value)
        meta = {**pl_module.describe(), "selected_by": self.monitor, "selected_value": self.best,
                "metrics": {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}}
        path = self.path(trainer)
        save_learned_optimizer(pl_module.lopt, path, meta)
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2, default=str))

    def state_dict(self):
        return {"best": self.best}

    def load_state_dict(self, state_dict):
        self.best = state_dict.get("best", math.inf)
