"""More learned optimizers on the exact instances of committed evaluations (a comparison table).

    python results/lopt_small_fc_mix/extra_rows.py OUT.md NAME=CHECKPOINT ... -- EVAL_DIR ...

For every ``EVAL_DIR/results.json`` (written by evaluate.py), trains the same held-out test instances
(same task, ``--set`` overrides, steps and seeds) with each checkpoint, and tabulates the final training
loss next to that evaluation's learning-rate-tuned Adam (same seeds, so the comparison is paired).
Writes ``OUT.md`` and ``OUT.json``.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from l2l_torch.checkpoint import load_learned_optimizer
from l2l_torch.cli import task_family_from_config
from l2l_torch.evaluation import train_optimizee
from l2l_torch.optim import LearnedOptimizer
from l2l_torch.tasks.base import TEST_SEED_OFFSET


def main(argv: list[str]) -> None:
    out, rest = Path(argv[0]), argv[1:]
    split = rest.index("--")
    ckpts = dict(a.split("=", 1) for a in rest[:split])
    rows = []
    for d in rest[split + 1:]:
        r = json.loads((Path(d) / "results.json").read_text())
        family = task_family_from_config(r["task"], r.get("overrides", {}))
        adam = r["optimizers"]["adam_tuned"]["per_seed"]["train_loss"]
        learned = next(k for k in r["optimizers"] if not k.startswith(("adam", "rmsprop", "sgd", "adagrad")))
        row = {"eval": Path(d).name, "steps": r["steps"], "adam_tuned": adam, learned: r["optimizers"][learned]
               ["per_seed"]["train_loss"]}
        for name, path in ckpts.items():
            lopt, _ = load_learned_optimizer(path)
            losses = []
            for i in range(r["seeds"]):
                seed = TEST_SEED_OFFSET + i
                res = train_optimizee(family.sample(seed), lambda g, lopt=lopt: LearnedOptimizer(g, lopt=lopt),
                                      r["steps"], seed)
                losses.append(float("nan") if res.diverged else res.final["train_loss"])
            row[name] = losses
            print(d, name, statistics.mean(losses), flush=True)
        rows.append(row)
    names = ["adam_tuned", learned, *ckpts]
    lines = ["| evaluation | steps | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for row in rows:
        cells = []
        for n in names:
            v = row[n]
            wins = sum(a < b for a, b in zip(v, row["adam_tuned"], strict=True))
            cells.append(f"{statistics.mean(v):.4f} ± {statistics.stdev(v):.3f}"
                         + ("" if n == "adam_tuned" else f" ({wins}/{len(v)} lower)"))
        lines.append(f"| {row['eval']} | {row['steps']} | " + " | ".join(cells) + " |")
    out.with_suffix(".md").write_text("Final training loss, mean ± std over the same 5 held-out seeds; "
                                      "(k/5 lower) = seeds where it beats tuned Adam.\n\n" + "\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
