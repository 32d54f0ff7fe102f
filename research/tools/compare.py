"""More learned optimizers on the exact held-out instances of committed evaluations: a paired table.

    python -m research.tools.compare OUT NAME=CHECKPOINT [NAME=CHECKPOINT ...] -- EVAL_DIR [EVAL_DIR ...]

For every ``EVAL_DIR/results.json`` (written by ``evaluate.py``), trains the same held-out instances (same
task, ``--set`` overrides, steps and seeds) with each checkpoint, and tabulates the final training loss
beside that evaluation's learning-rate-tuned Adam and its own learned optimizer. Every column sees the
same seeds, so "k/n lower" counts the seeds on which a column beats tuned Adam. The checkpoints run as the
evaluation did: on the device and with the iterate averaging (``evaluate.py --average``) its ``results.json``
records. Writes ``OUT.md`` and ``OUT.json``. Use it to compare checkpoints (an ablation) without tuning the
baselines again.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

from research.tools.research_report import learned_name


def _device_of(result: dict[str, Any], folder: str):
    """The device the evaluation in ``folder`` ran on (its ``results.json`` records it), so that the checkpoints
    are evaluated by the same computation; the CPU, with a warning, when that was CUDA and none is here."""
    import torch

    dev = torch.device(result.get("device", "cpu"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        print(f"warning: {folder} was evaluated on {dev} and this machine has no CUDA device: the checkpoints run "
              "on the CPU (same seeds and data, other float rounding than the evaluation's columns)",
              file=sys.stderr, flush=True)
        dev = torch.device("cpu")
    return dev


def compare_rows(ckpts: dict[str, str], eval_dirs: list[str]) -> list[dict[str, Any]]:
    """One row per evaluation folder: per-seed final training losses of tuned Adam, the evaluation's learned
    optimizer and each of ``ckpts`` (name -> learned-optimizer file)."""
    from l2l_torch.checkpoint import load_learned_optimizer
    from l2l_torch.cli import UserError, task_family_from_config
    from l2l_torch.evaluation import train_optimizee
    from l2l_torch.optim import LearnedOptimizer
    from l2l_torch.tasks.base import TEST_SEED_OFFSET

    rows = []
    for d in eval_dirs:
        path = Path(d) / "results.json"
        if not path.is_file():
            raise UserError(f"no results.json in {d}")
        r = json.loads(path.read_text())
        if "adam_tuned" not in r["optimizers"]:
            raise UserError(f"{d} has no tuned Adam to compare with (evaluated with --no-tune?)")
        learned = learned_name(r)
        clash = sorted(set(ckpts) & {"adam_tuned", learned})
        if clash:
            raise UserError(f"checkpoint name(s) {clash} clash with the columns of {d}; choose other names")
        family = task_family_from_config(r["task"], r.get("overrides", {})).to(_device_of(r, d))
        row = {"eval": Path(d).name, "steps": r["steps"],
               "adam_tuned": r["optimizers"]["adam_tuned"]["per_seed"]["train_loss"],
               learned: r["optimizers"][learned]["per_seed"]["train_loss"]}
        for name, ckpt in ckpts.items():
            lopt, _ = load_learned_optimizer(ckpt, map_location=family.device)
            losses = []
            for i in range(r["seeds"]):  # evaluate.py's held-out seeds
                seed = TEST_SEED_OFFSET + i
                res = train_optimizee(family.sample(seed), lambda g, lopt=lopt: LearnedOptimizer(g, lopt=lopt),
                                      r["steps"], seed, average=r.get("average"))  # as the evaluation did
                losses.append(math.nan if res.diverged else res.final["train_loss"])
            row[name] = losses
            print(d, name, statistics.mean(losses), flush=True)
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The comparison table: mean ± std per column, and on how many seeds each beats tuned Adam."""
    names = list(dict.fromkeys(k for row in rows for k in row if k not in ("eval", "steps")))
    lines = ["| evaluation | steps | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for row in rows:
        cells = []
        for n in names:
            v = row.get(n)
            if v is None:
                cells.append("–")
                continue
            wins = sum(a < b for a, b in zip(v, row["adam_tuned"], strict=True))
            sd = statistics.stdev(v) if len(v) > 1 else 0.0
            cells.append(f"{statistics.mean(v):.4f} ± {sd:.3f}" + ("" if n == "adam_tuned" else f" ({wins}/{len(v)} lower)"))
        lines.append(f"| {row['eval']} | {row['steps']} | " + " | ".join(cells) + " |")
    return ("Final training loss, mean ± std over each evaluation's held-out seeds (the same seeds in every column); "
            "(k/n lower) = seeds where it beats tuned Adam.\n\n" + "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    from l2l_torch.cli import UserError, fail

    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv or argv[0].startswith("-"):
        argv = ["--help"]
    p = argparse.ArgumentParser(prog="python -m research.tools.compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="output path without suffix (OUT.md and OUT.json are written)")
    p.add_argument("checkpoints", nargs="+", metavar="NAME=CHECKPOINT")
    split = argv.index("--") if "--" in argv else len(argv)
    a = p.parse_args(argv[:split])
    eval_dirs = argv[split + 1:]
    try:
        if not eval_dirs:
            raise UserError("give evaluation folders after --")
        bad = [c for c in a.checkpoints if "=" not in c]
        if bad:
            raise UserError(f"checkpoints must be NAME=PATH, got {bad}")
        ckpts = dict(c.split("=", 1) for c in a.checkpoints)
        rows = compare_rows(ckpts, eval_dirs)
    except (UserError, FileNotFoundError) as e:
        fail(str(e))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table = markdown(rows)
    out.with_suffix(".md").write_text(table)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    print(table)


if __name__ == "__main__":
    main()
