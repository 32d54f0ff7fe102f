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

from l2l_torch.cli import task_family_from_config
from l2l_torch.evaluation import WarmupAdam, compare
from research.tools.research_report import paired_difference, verdict_of


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
    adam = prev["optimizers"]["adam_tuned"]["per_seed"]
    print(f"\n{prev['task']}, {prev['steps']} steps, {prev['seeds']} held-out seeds; d: paired difference to tuned Adam "
          f"(lr {prev['optimizers']['adam_tuned']['lr']}, no warm-up), verdict at 2 SE\n")
    print("| optimizer | final train loss | d loss (SE) | test accuracy | d accuracy, points (SE) | verdict (loss) |")
    print("|---|---|---|---|---|---|")
    for name, res in out["optimizers"].items():
        if name in ("adam", "adam_tuned") or "per_seed" not in res:
            continue
        seeds = res["per_seed"]
        dl = paired_difference(seeds["train_loss"], adam["train_loss"])
        acc = seeds.get("test_accuracy")
        da = paired_difference(acc, adam["test_accuracy"]) if acc else None
        print(f"| {name} | {res['train_loss']['mean']:.4f} | {dl[0]:+.4f} ({dl[1]:.4f}) | "
              + (f"{100 * res['test_accuracy']['mean']:.1f} % | {100 * da[0]:+.1f} ({100 * da[1]:.1f}) |"
                 if da else "– | – |")
              + f" {verdict_of(*dl)} |")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
