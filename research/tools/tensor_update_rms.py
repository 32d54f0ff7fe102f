"""How an optimizer splits its steps between layers: the RMS of each parameter tensor's update at chosen steps.

Trains one held-out instance of a task (the first evaluation seed of ``evaluate.py``) with each optimizer given and
prints, per optimizer and step, the root-mean-square of every tensor's update (params after minus before)::

    python -m research.tools.tensor_update_rms --task fmnist_t1 --steps 100 \\
        --checkpoint research/experiments/fmnist_t1_hyper_adam/raw/optimizer.pt \\
        --scheduled-adam '{"lr": 0.01, "betas": [0.6, 0.9], "head_mult": 30, "warmup": 10, "cosine": true}'

``--scheduled-adam`` takes a configuration of ``research/tools/schedule_control.py`` (its best on fmnist_t1 above).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from l2l_torch import LearnedOptimizer  # noqa: E402
from l2l_torch.checkpoint import load_learned_optimizer  # noqa: E402
from l2l_torch.cli import task_family_from_config  # noqa: E402
from l2l_torch.evaluation import baseline_factory, train_optimizee  # noqa: E402
from l2l_torch.tasks.base import TEST_SEED_OFFSET  # noqa: E402
from research.tools.schedule_control import factory as scheduled_adam  # noqa: E402


class TensorRMSRecorder:
    """``record_updates`` of :func:`~l2l_torch.evaluation.train_optimizee`: per-tensor update RMS at ``steps``."""

    def __init__(self, steps: set[int]) -> None:
        self.steps, self.step = steps, 0
        self.rows: dict[int, dict[str, float]] = {}
        self._before: dict[str, Tensor] = {}

    def before(self, params: dict[str, Tensor]) -> None:
        self.step += 1
        if self.step in self.steps:
            self._before = {k: v.detach().clone() for k, v in params.items()}

    def after(self, params: dict[str, Tensor]) -> None:
        if self.step in self.steps:
            self.rows[self.step] = {k: float((v.detach() - self._before[k]).pow(2).mean().sqrt())
                                    for k, v in params.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", required=True)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--at", type=int, nargs="+", default=[1, 5, 10, 20, 50, 80, 100], help="steps to report")
    ap.add_argument("--checkpoint", action="append", default=[], help="a learned optimizer (repeatable)")
    ap.add_argument("--adam-lr", type=float, action="append", default=[], help="torch.optim.Adam at this lr")
    ap.add_argument("--scheduled-adam", action="append", default=[], help="a schedule_control configuration (JSON)")
    args = ap.parse_args(argv)
    family = task_family_from_config(args.task)
    seed = TEST_SEED_OFFSET
    optimizers = {}
    for path in args.checkpoint:
        lopt = load_learned_optimizer(path)[0]
        optimizers[path] = lambda groups, lopt=lopt: LearnedOptimizer(groups, lopt=lopt)
    for lr in args.adam_lr:
        optimizers[f"adam lr {lr:g}"] = baseline_factory("adam", lr)
    for spec in args.scheduled_adam:
        cfg = json.loads(spec)
        cfg["betas"] = tuple(cfg["betas"])
        optimizers[f"scheduled adam {spec}"] = scheduled_adam(cfg, args.steps)
    print(f"{args.task}, one held-out instance (seed {seed}), {args.steps} steps: RMS of each tensor's update")
    for name, make in optimizers.items():
        rec = TensorRMSRecorder(set(args.at))
        run = train_optimizee(family.sample(seed), make, args.steps, seed, record_updates=rec)
        print(f"\n{name}: final train loss {run.final['train_loss']:.4f}")
        for step in sorted(rec.rows):
            print(f"  step {step:4d}  " + "  ".join(f"{k} {v:.2e}" for k, v in rec.rows[step].items()))


if __name__ == "__main__":
    main()
