"""Choose a learned optimizer's step-size warm-up on validation instances (not the evaluation's).

    L2L_DATA_DIR=../shared/data python scripts/warmup_scan.py CKPT --warmups 0 2 5 10 \
        --rows cifar_convdense:300 fmnist_t1:100 fmnist_t1:100:activation=relu --seeds 3 --out scan.json

Trains ``--seeds`` validation instances (seeds from ``VAL_SEED_OFFSET + --seed-base``, never trained on and
disjoint from the evaluation's ``TEST_SEED_OFFSET`` seeds) of each row with the optimizer at every warm-up
(``SmallFCOptimizer(warmup=W)``: the update of step t scaled by min(1, t / W); W = 0 is the optimizer as it is),
and prints the mean final training loss per row and W, and per W the mean over rows of the ratio to W = 0. A row
is ``CONFIG:STEPS[:KEY=VALUE,...]`` with task overrides as ``evaluate.py --set``.

    python scripts/warmup_scan.py --merge A.json B.json ...

prints one table from several scans' JSON (rows and warm-ups merged; each W's ratio is taken to the smallest W over
the rows scanned at both).
"""

from __future__ import annotations

import argparse
import json
import math

from l2l_torch.checkpoint import load_learned_optimizer
from l2l_torch.cli import parse_overrides, task_family_from_config
from l2l_torch.evaluation import train_optimizee
from l2l_torch.optim import LearnedOptimizer
from l2l_torch.tasks.base import VAL_SEED_OFFSET


def parse_row(row: str) -> tuple[str, int, dict]:
    config, steps, *rest = row.split(":")
    return config, int(steps), parse_overrides(rest[0].split(",") if rest else [])


def print_table(table: dict[str, dict[str, list[float]]]) -> tuple[dict, dict]:
    """Print mean final loss per row and W (a markdown table) and per W the mean ratio to the smallest W."""
    ws = sorted({w for d in table.values() for w in d}, key=float)
    mean = {row: {w: sum(v) / len(v) for w, v in d.items()} for row, d in table.items()}
    print("\n| row | " + " | ".join(f"warmup {w}" for w in ws) + " |\n|---|" + "---|" * len(ws))
    for row, d in mean.items():
        print(f"| {row} | " + " | ".join(f"{d[w]:.4f}" if w in d else "–" for w in ws) + " |")
    ratio, counts = {}, {}
    for w in ws:  # over the rows scanned at both W and the smallest W
        rows = [d for d in mean.values() if w in d and ws[0] in d]
        ratio[w], counts[w] = sum(d[w] / d[ws[0]] for d in rows) / max(len(rows), 1), len(rows)
    print(f"| mean ratio to warmup {ws[0]} | " + " | ".join(f"{ratio[w]:.4f} ({counts[w]} rows)" for w in ws) + " |")
    return mean, ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", nargs="?")
    ap.add_argument("--warmups", type=float, nargs="+", default=[0, 2, 5, 10])
    ap.add_argument("--rows", nargs="+", help="CONFIG:STEPS[:KEY=VALUE,...]")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--seed-base", type=int, default=500, help="validation seeds from VAL_SEED_OFFSET + this")
    ap.add_argument("--out", help="write the figures as JSON here")
    ap.add_argument("--merge", nargs="+", metavar="JSON", help="only print one table from these scans' JSON")
    args = ap.parse_args()
    if args.merge:
        table = {}
        for path in args.merge:
            with open(path) as f:
                for row, d in json.load(f)["final_train_loss"].items():
                    table.setdefault(row, {}).update(d)
        print_table(table)
        return
    if not (args.checkpoint and args.rows):
        ap.error("give a checkpoint and --rows (or --merge)")
    lopt, _ = load_learned_optimizer(args.checkpoint)
    if not hasattr(lopt, "warmup"):
        raise SystemExit(f"{args.checkpoint} holds a {lopt.arch_name!r} optimizer, which has no warm-up option")
    seeds = [VAL_SEED_OFFSET + args.seed_base + i for i in range(args.seeds)]
    table: dict[str, dict[str, list[float]]] = {}
    for row in args.rows:
        config, steps, overrides = parse_row(row)
        family = task_family_from_config(config, overrides)
        table[row] = {}
        for w in args.warmups:
            lopt.warmup = float(w)  # a schedule with no weights: the same theta at every W
            losses = []
            for s in seeds:
                r = train_optimizee(family.sample(s), lambda groups: LearnedOptimizer(groups, lopt=lopt), steps, s)
                losses.append(math.inf if r.diverged else r.final["train_loss"])
            table[row][f"{w:g}"] = losses
            print(f"{row} warmup {w:g}: " + " ".join(f"{v:.4f}" for v in losses)
                  + f"  mean {sum(losses) / len(losses):.4f}", flush=True)
    mean, ratio = print_table(table)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"checkpoint": args.checkpoint, "seeds": seeds, "final_train_loss": table,
                       "mean": mean, "mean_ratio": ratio}, f, indent=1)


if __name__ == "__main__":
    main()
