"""Control for the learned optimizers' step-size warm-up: Adam with the same linear warm-up, on the same seeds.

    L2L_DATA_DIR=../shared/data python -m research.tools.warmup_control research/experiments/family_rows_seeds10/cifar_convdense_300/results.json \
        --lrs 0.001 0.003 --warmup 10 --out research/experiments/warmup_control/cifar_convdense_300.json

small_fc's ``warmup: W`` scales the update of step ``t`` (from 1) by ``min(1, t / W)``, a hand-designed schedule.
This trains the held-out instances of an ``evaluate.py`` output (its task, overrides, steps and seeds) with
``torch.optim.Adam`` under the same schedule at each ``--lrs``, and prints, per learning rate and per optimizer of
that output, the mean final training loss and test accuracy with the paired difference to its tuned Adam (no
warm-up). The JSON holds the per-seed figures in ``evaluate.py``'s layout (``optimizers``), so
``research/tools/paired_verdicts.py OUT.json small_fc --against adam_warmup10_lr0.001`` judges them. (The learning rates
here are not tuned on separate instances; ``evaluate.py --baselines adam,adam_warmup`` tunes the same baseline by the
project's procedure.)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from l2l_torch.cli import task_family_from_config
from l2l_torch.evaluation import WarmupAdam, compare
from l2l_torch.stats import paired_comparison
from research.tools.research_report import judge, p_cell


def table(out: dict[str, Any]) -> str:
    """Markdown: each optimizer of ``out`` (warmup_control's JSON) against the tuned Adam it was compared with, paired
    over the same seeds; the loss verdicts are Holm-corrected across the table's rows (``l2l_torch.stats``)."""
    adam = out["optimizers"]["adam_tuned"]["per_seed"]
    names = [n for n, r in out["optimizers"].items() if n not in ("adam", "adam_tuned") and "per_seed" in r]
    tests = [{**paired_comparison(out["optimizers"][n]["per_seed"]["train_loss"], adam["train_loss"]),
              "paired": True, "lower_is_better": True, "status": None} for n in names]
    lines = [f"\n{out['task']}, {out['steps']} steps, {out['seeds']} held-out seeds; d: paired difference to tuned Adam "
             f"(lr {out['optimizers']['adam_tuned']['lr']}, no warm-up) [95 % CI]; verdict on the loss, paired t-test "
             f"Holm-corrected across the {len(names)} rows\n",
             "| optimizer | final train loss | d loss [95 % CI] | p (Holm) | verdict (loss) | test accuracy "
             "| d accuracy, points [95 % CI] |", "|---|---|---|---|---|---|---|"]
    for name, t, (v, p_adj) in zip(names, tests, judge(tests)):
        res = out["optimizers"][name]
        acc = res["per_seed"].get("test_accuracy")
        da = paired_comparison(acc, adam["test_accuracy"]) if acc else None
        lines.append(f"| {name} | {res['train_loss']['mean']:.4f} | {t['mean_diff']:+.4f} [{t['ci_low']:+.4f}, "
                     f"{t['ci_high']:+.4f}] | {p_cell(p_adj)} | {v} | "
                     + (f"{100 * res['test_accuracy']['mean']:.1f} % | {100 * da['mean_diff']:+.1f} "
                        f"[{100 * da['ci_low']:+.1f}, {100 * da['ci_high']:+.1f}] |" if da else "– | – |"))
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("against", help="an evaluate.py results.json (task, seeds and tuned Adam to compare with)")
    ap.add_argument("--lrs", type=float, nargs="+", required=True)
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    prev = json.loads(Path(a.against).read_text())
    family = task_family_from_config(prev["task"], prev.get("overrides") or {})
    optimizers = {f"adam_warmup{a.warmup:g}_lr{lr:g}": (lambda groups, lr=lr: WarmupAdam(groups, lr, a.warmup), lr)
                  for lr in a.lrs}
    mine = compare(family, optimizers, prev["steps"], prev["seeds"],
                   progress=lambda name: print(f"training {prev['seeds']} instances with {name}", flush=True))
    out = {"task": prev["task"], "steps": prev["steps"], "seeds": prev["seeds"], "warmup": a.warmup,
           "against": a.against, "command": "python -m research.tools.warmup_control " + " ".join(
               [a.against, "--lrs", *map(str, a.lrs), "--warmup", f"{a.warmup:g}", "--out", a.out]),
           "optimizers": {**prev["optimizers"], **mine}}
    print(table(out))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
