"""Checkpoint selection on the STN that also bounds the size of the validation digits (``research/experiments/
stn_mass_select``).

The ``affnist`` recipe keeps the meta-step whose held-out STNs have the lowest validation loss (``1 - SSIM`` on
validation 8s). The STN goal also bounds each digit set's foreground-mass ratio: at least 0.8 and at most 1.1 x
tuned Adam's. Selecting on the loss alone kept runs whose 1s grew past that cap. :class:`MassCappedSTNFamily`
selects on the validation digits instead (``val``, ``val6``, ``val1``: images of the test digits taken from the
training data, never test images): a validation instance whose mass ratio on a capped split lies outside
``[min_mass, cap]`` scores ``OUT_OF_BOUNDS`` plus its total excess, worse than any ``1 - SSIM`` (at most 2); an
instance within the bounds scores its loss. Meta-training itself is unchanged: only the number validation reports,
and so the meta-step that is kept, differs.

The caps come from tuned Adam on validation instances, never from test digits::

    python -m research.tools.stn_mass_select --lr 0.01 --instances 10 --out research/experiments/stn_mass_select

trains Adam at ``--lr`` (tuned on the tuning instances of an ``evaluate.py --task affnist`` run) on validation
instances ``VAL_SEED_OFFSET + i``, and writes each validation split's mean mass ratio and the cap,
``--margin`` (1.1) times it, to ``caps.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from l2l_torch.affnist import DigitSets
from l2l_torch.tasks.base import VAL_SEED_OFFSET
from l2l_torch.tasks.stn import STNFamily, STNTask

#: what a validation instance outside the mass bounds scores, before its excess is added: more than ``1 - SSIM``
#: can be, so selection prefers any meta-step whose instances are all within the bounds
OUT_OF_BOUNDS = 2.0


def mass_excess(ratios: Mapping[str, float], caps: Mapping[str, float], min_mass: float) -> float:
    """How far the mass ratios lie outside their bounds: ``sum over capped splits of max(0, ratio - cap) +
    max(0, min_mass - ratio)``; 0 when every capped split is within ``[min_mass, cap]``. A non-finite ratio
    counts as infinitely far."""
    total = 0.0
    for split, cap in caps.items():
        r = ratios[split]
        if not math.isfinite(r):
            return float("inf")
        total += max(0.0, r - cap) + max(0.0, min_mass - r)
    return total


def mass_ratios(task: STNTask, final: Mapping[str, float], params: Mapping[str, Tensor],
                buffers: Mapping[str, Tensor], splits) -> dict[str, float]:
    """The mean mass ratio of each of ``splits`` under the trained STN: from the run's ``final`` metrics when they
    hold it (``val``), else evaluated."""
    return {s: final[f"{s}_mass_ratio"] if f"{s}_mass_ratio" in final
            else task.evaluate(params, buffers, s)["mass_ratio"] for s in splits}


def _bounds_description(mass_caps: Mapping[str, float], min_mass: float) -> dict[str, Any]:
    """The mass bounds, for ``describe`` (empty when off)."""
    return {"mass_caps": dict(mass_caps), "min_mass": min_mass} if mass_caps else {}


class MassCappedSTNTask(STNTask):
    """:class:`~l2l_torch.tasks.stn.STNTask` whose validation number bounds the validation digits' mass ratios.

    Args:
        mass_caps: upper bound of the mean mass ratio per validation split (``{"val": ..., "val6": ...,
            "val1": ...}``); empty: the plain task's validation loss.
        min_mass: lower bound of every capped split's mass ratio.
        The other arguments: as :class:`~l2l_torch.tasks.stn.STNTask`.
    """

    def __init__(self, data: DigitSets, seed: int = 0, *args: Any, mass_caps: Mapping[str, float] | None = None,
                 min_mass: float = 0.8, **kwargs: Any) -> None:
        super().__init__(data, seed, *args, **kwargs)
        self.mass_caps, self.min_mass = dict(mass_caps or {}), min_mass
        if missing := sorted(set(self.mass_caps) - set(self.validation_splits)):
            raise ValueError(f"mass_caps names splits that are not validation splits {self.validation_splits}: "
                             f"{missing}")

    def validation_mass_ratios(self, final: Mapping[str, float], params: Mapping[str, Tensor],
                               buffers: Mapping[str, Tensor]) -> dict[str, float]:
        """The mean mass ratio of each capped split under the trained STN (:func:`mass_ratios`)."""
        return mass_ratios(self, final, params, buffers, self.mass_caps)

    def validation_loss(self, final: Mapping[str, float], params: Mapping[str, Tensor] | None = None,
                        buffers: Mapping[str, Tensor] | None = None) -> float:
        """The validation loss when the capped splits' mass ratios are within their bounds, else
        ``OUT_OF_BOUNDS + mass_excess``."""
        loss = super().validation_loss(final)
        if not self.mass_caps:
            return loss
        if params is None or buffers is None:
            raise ValueError("mass_caps: validation_loss needs the trained params and buffers")
        excess = mass_excess(self.validation_mass_ratios(final, params, buffers), self.mass_caps, self.min_mass)
        return loss if excess == 0 else OUT_OF_BOUNDS + excess

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **_bounds_description(self.mass_caps, self.min_mass)}


class MassCappedSTNFamily(STNFamily):
    """:class:`~l2l_torch.tasks.stn.STNFamily` whose checkpoint selection bounds the validation digits' mass ratios
    (:class:`MassCappedSTNTask`; ``mass_caps`` and ``min_mass`` as there, the rest as
    :class:`~l2l_torch.tasks.stn.STNFamily`)."""

    task_class = MassCappedSTNTask

    def __init__(self, *args: Any, mass_caps: dict[str, float] | None = None, min_mass: float = 0.8,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mass_caps, self.min_mass = dict(mass_caps or {}), min_mass

    def task_kwargs(self) -> dict[str, Any]:
        return {**super().task_kwargs(), "mass_caps": self.mass_caps, "min_mass": self.min_mass}

    @property
    def data_source(self) -> str:
        caps = ", ".join(f"{s} {c:.3g}" for s, c in self.mass_caps.items())
        return super().data_source + (f"; selection bounds the validation mass ratios to [{self.min_mass:g}, cap] "
                                      f"({caps})" if self.mass_caps else "")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **_bounds_description(self.mass_caps, self.min_mass)}


def measure_caps(family: STNFamily, lr: float, instances: int, steps: int, margin: float) -> dict[str, Any]:
    """Adam at ``lr`` on validation instances ``VAL_SEED_OFFSET + i`` (``i < instances``) of ``family``, ``steps``
    steps each: per validation split the mean mass ratio over instances, its per-instance values, and the cap
    ``margin`` x the mean."""
    from l2l_torch.training import train_optimizee

    per_split: dict[str, list[float]] = {}
    for i in range(instances):
        task = family.sample(VAL_SEED_OFFSET + i)
        r = train_optimizee(task, lambda groups: torch.optim.Adam(groups, lr=lr), steps, VAL_SEED_OFFSET + i,
                            keep_params=True)
        if r.diverged:
            raise RuntimeError(f"Adam at lr {lr} diverged on validation instance {i}")
        for split, ratio in mass_ratios(task, r.final, r.params, r.buffers, task.validation_splits).items():
            per_split.setdefault(split, []).append(ratio)
    means = {s: statistics.fmean(v) for s, v in per_split.items()}
    return {"lr": lr, "instances": instances, "steps": steps, "margin": margin,
            "first_instance": VAL_SEED_OFFSET, "mean_mass_ratio": means,
            "mass_ratio_per_instance": per_split, "caps": {s: margin * m for s, m in means.items()}}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m research.tools.stn_mass_select", description=__doc__.split("\n\n")[0])
    p.add_argument("--lr", type=float, required=True, help="Adam's learning rate, tuned on the tuning instances")
    p.add_argument("--instances", type=int, default=10, help="validation instances (default 10)")
    p.add_argument("--steps", type=int, default=200, help="optimizee steps (default 200, the recipe's horizon)")
    p.add_argument("--margin", type=float, default=1.1, help="cap = margin x Adam's mean ratio (default 1.1)")
    p.add_argument("--out", required=True, help="folder for caps.json")
    a = p.parse_args(argv)
    torch.manual_seed(0)
    start = time.time()
    result = measure_caps(STNFamily(), a.lr, a.instances, a.steps, a.margin)
    result.update(seconds=round(time.time() - start, 1),
                  command=" ".join(["python -m research.tools.stn_mass_select", *(sys.argv[1:] if argv is None
                                                                                  else argv)]))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "caps.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("mean_mass_ratio", "caps", "seconds")}, indent=1))


if __name__ == "__main__":
    main()
