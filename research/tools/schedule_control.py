"""Control: Adam with a tuned schedule, output-layer learning rate and betas, against a learned optimizer.

    L2L_DATA_DIR=../shared/data OMP_NUM_THREADS=1 python -m research.tools.schedule_control \
        research/experiments/fmnist_t1_pes/fmnist_t1_100/results.json --out research/experiments/schedule_control/fmnist_t1_100.json

The baselines of ``evaluate.py`` tune one number, the learning rate, at a constant schedule. A learned optimizer
can learn more than that: a step-size schedule, a different step per layer, its own momentum. This control gives
``torch.optim.Adam`` those hand-designed freedoms and tunes them the way ``evaluate.py`` tunes a learning rate, on
task instances disjoint from the evaluation ones (the tuning seeds), by the mean final training loss:

- ``lr`` and ``betas``;
- ``head_mult``: the output layer (the task's last two parameter tensors, the weight and bias of the classifier's
  last layer) gets ``lr * head_mult``;
- the schedule: constant, or a linear warm-up over ``warmup`` steps then a cosine decay to 0 at the last step.

The default grid has 144 configurations (:data:`GRID`); ``--lrs``, ``--beta1s``, ``--beta2s``, ``--head-mults`` and
``--schedules`` choose others (a smaller grid for slow tasks).

The best configuration is then trained on the held-out instances of an ``evaluate.py`` output (its task, steps and
seeds, the same initial weights and batches), and the table compares it with that output's tuned Adam and learned
optimizers (paired differences; verdicts by paired t-test, Holm-corrected across the table's rows). The JSON adds it, as ``adam_sched``, to the output's
``optimizers``, so ``research/tools/paired_verdicts.py OUT.json --against adam_sched`` judges any optimizer against it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from pathlib import Path
from typing import Any

from l2l_torch.cli import task_family_from_config
from l2l_torch.evaluation import WarmupAdam, compare, train_optimizee
from l2l_torch.stats import paired_comparison
from l2l_torch.tasks.base import TUNE_SEED_OFFSET
from research.tools.research_report import judge, p_cell


class ScheduledAdam(WarmupAdam):
    """Adam with a per-step learning-rate factor and a larger learning rate on the output layer.

    The factor at step ``t`` (from 1) is ``min(1, t / warmup)`` (1 when ``warmup`` is 0), times
    ``(1 + cos(pi * (t - 1) / steps)) / 2`` with ``cosine``. The last two tensors of the last param group (the
    output layer's weight and bias in this project's classifiers) get ``lr * head_mult``.
    """

    def __init__(self, groups: list[dict[str, Any]], lr: float, betas: tuple[float, float], head_mult: float,
                 warmup: int, cosine: bool, steps: int) -> None:
        groups = [dict(g, params=list(g["params"])) for g in groups]
        head = groups[-1]["params"][-2:]
        groups[-1]["params"] = groups[-1]["params"][:-2]
        groups = [g for g in groups if g["params"]] + [{"params": head, "kind": "head", "lr": lr * head_mult}]
        # a 1-step warm-up is none (min(1, t / 1) = 1 from step 1)
        super().__init__(groups, lr=lr, warmup=max(warmup, 1), betas=betas)
        self.cosine, self.steps = cosine, steps

    def factor(self, t: int) -> float:
        f = super().factor(t)
        return f * 0.5 * (1.0 + math.cos(math.pi * (t - 1) / self.steps)) if self.cosine else f


#: the default grid: 3 learning rates x 3 beta1 x 2 beta2 x 4 output-layer multipliers x 2 schedules (144)
GRID = {"lrs": (0.003, 0.01, 0.03), "beta1s": (0.6, 0.8, 0.9), "beta2s": (0.9, 0.999), "head_mults": (1, 3, 10, 30),
        "schedules": ("constant", "warmup_cosine")}
SCHEDULES = {"constant": (0, False), "warmup_cosine": (10, True)}


def configs(lrs=GRID["lrs"], beta1s=GRID["beta1s"], beta2s=GRID["beta2s"], head_mults=GRID["head_mults"],
            schedules=GRID["schedules"]) -> list[dict[str, Any]]:
    """Every combination of the given values (the default: :data:`GRID`)."""
    grid = itertools.product(lrs, beta1s, beta2s, head_mults, schedules)
    return [{"lr": lr, "betas": (b1, b2), "head_mult": hm, "warmup": SCHEDULES[sch][0], "cosine": SCHEDULES[sch][1]}
            for lr, b1, b2, hm, sch in grid]


def factory(cfg: dict[str, Any], steps: int):
    return lambda groups: ScheduledAdam(groups, steps=steps, **cfg)


def table(out: dict[str, Any], report_keys: list[str]) -> str:
    """Markdown: each optimizer of ``out`` (schedule_control's JSON) against Adam with the tuned schedule, paired over
    the same seeds; the training-loss verdicts are Holm-corrected across the table's rows (``l2l_torch.stats``)."""
    sched = out["optimizers"]["adam_sched"]["per_seed"]
    names = [n for n, r in out["optimizers"].items() if "per_seed" in r and n != "adam"]
    judged_names = [n for n in names if n != "adam_sched"]
    tests = {n: {**paired_comparison(out["optimizers"][n]["per_seed"]["train_loss"], sched["train_loss"]),
                 "paired": True, "lower_is_better": True, "status": None} for n in judged_names}
    judged = dict(zip(judged_names, judge(list(tests.values()))))

    def d(t: dict[str, Any]) -> str:
        if math.isnan(t["ci_low"]):
            return f"{t['mean_diff']:+.4f}"
        return f"{t['mean_diff']:+.4f} [{t['ci_low']:+.4f}, {t['ci_high']:+.4f}]"

    lines = [f"\n{out['task']}, {out['steps']} steps, {out['seeds']} held-out seeds; d: paired difference of the row "
             "minus Adam with the tuned schedule (adam_sched) [95 % CI]; verdict on the training loss, paired t-test "
             f"Holm-corrected across the {len(judged_names)} rows\n",
             "| optimizer | final train loss | d loss [95 % CI] | p (Holm) | verdict (loss) | "
             + " | ".join(f"{k} | d {k} [95 % CI]" for k in report_keys) + " |",
             "|---|---|---|---|---|" + "---|---|" * len(report_keys)]
    for name in names:
        res = out["optimizers"][name]
        seeds = res["per_seed"]
        if name == "adam_sched":
            cells = [f"{res['train_loss']['mean']:.4f}", "–", "–", "–"]
        else:
            v, p_adj = judged[name]
            cells = [f"{res['train_loss']['mean']:.4f}", d(tests[name]), p_cell(p_adj), v]
        for k in report_keys:
            cells += [f"{res[k]['mean']:.4f}", d(paired_comparison(seeds[k], sched[k]))]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("against", help="an evaluate.py results.json (task, steps, seeds and optimizers to compare with)")
    ap.add_argument("--tune-seeds", type=int, default=4, help="tuning instances per configuration")
    for key, cast in (("lrs", float), ("beta1s", float), ("beta2s", float), ("head_mults", float)):
        ap.add_argument("--" + key.replace("_", "-"), type=cast, nargs="+", default=GRID[key], help="grid values")
    ap.add_argument("--schedules", nargs="+", choices=sorted(SCHEDULES), default=GRID["schedules"])
    ap.add_argument("--report-keys", nargs="+", default=["test_accuracy"],
                    help="final metrics shown beside the training loss (e.g. test8_ssim test1_mass_ratio for the STN)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    grid = {k: tuple(getattr(a, k)) for k in GRID}
    candidates = configs(**grid)
    prev = json.loads(Path(a.against).read_text())
    family = task_family_from_config(prev["task"], prev.get("overrides") or {})
    steps = prev["steps"]
    scores = []
    for i, cfg in enumerate(candidates):
        vals = []
        for s in range(a.tune_seeds):
            seed = TUNE_SEED_OFFSET + s
            r = train_optimizee(family.sample(seed), factory(cfg, steps), steps, seed)
            vals.append(math.inf if r.diverged else r.final["train_loss"])
        scores.append((sum(vals) / len(vals), i))
        print(f"tuning {i + 1:3d}: {cfg} -> {scores[-1][0]:.4f}", flush=True)
    best_score, best_i = min(scores)
    best = candidates[best_i]
    print(f"\nbest on {a.tune_seeds} tuning instances: {best} (mean final train loss {best_score:.4f})", flush=True)
    mine = compare(family, {"adam_sched": (factory(best, steps), best["lr"])}, steps, prev["seeds"])
    mine["adam_sched"]["config"] = {**best, "betas": list(best["betas"])}
    command = " ".join(["python -m research.tools.schedule_control", a.against, "--tune-seeds", str(a.tune_seeds),
                        *(f"--{k.replace('_', '-')} " + " ".join(map(str, v)) for k, v in grid.items() if v != GRID[k]),
                        *(["--report-keys", *a.report_keys] if a.report_keys != ["test_accuracy"] else []),
                        "--out", a.out])
    out = {"task": prev["task"], "steps": steps, "seeds": prev["seeds"], "against": a.against, "command": command,
           "tuning": {"seeds": a.tune_seeds, "metric": "train_loss", "best": mine["adam_sched"]["config"],
                      "grid": grid, "scores": [{**candidates[i], "score": sc} for sc, i in scores]},
           "optimizers": {**prev["optimizers"], **mine}}
    print(table(out, a.report_keys))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
