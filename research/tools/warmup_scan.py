"""Choose a learned optimizer's step-size warm-up, or its step scale, on validation instances (not the evaluation's).

    L2L_DATA_DIR=../shared/data python -m research.tools.warmup_scan CKPT --warmups 0 2 5 10 \
        --rows cifar_convdense:300 fmnist_t1:100 fmnist_t1:100:activation=relu --seeds 3 --out scan.json
    L2L_DATA_DIR=../shared/data python -m research.tools.warmup_scan CKPT --scales 0.8 1 1.25 --rows affnist:200 ...

Trains ``--seeds`` validation instances (seeds from ``VAL_SEED_OFFSET + --seed-base``, never trained on and
disjoint from the evaluation's ``TEST_SEED_OFFSET`` seeds) of each row with the optimizer at every warm-up
(``SmallFCOptimizer(warmup=W)``: the update of step t scaled by min(1, t / W); W = 0 is no warm-up) or, with
``--scales``, at every update multiplier ``s`` (``LearnedOptimizer(lr=s)``, like a learning-rate factor; the
same as multiplying the optimizer's ``step_mult`` by ``s``; the warm-up stays as stored). It prints the mean final
training loss per row and value, and per value the mean over rows of the ratio to the smallest value. A row is
``CONFIG:STEPS[:KEY=VALUE,...]`` with task overrides as ``evaluate.py --set``.

    python -m research.tools.warmup_scan --merge A.json B.json ...

prints one table from several scans' JSON (rows and values merged; each value's ratio is taken to the smallest value,
or to ``--ref``, over the rows scanned at both).
"""

from __future__ import annotations

import argparse
import json
import math
from functools import partial

from l2l_torch.checkpoint import load_learned_optimizer
from l2l_torch.cli import parse_overrides, task_family_from_config
from l2l_torch.evaluation import train_optimizee
from l2l_torch.optim import LearnedOptimizer
from l2l_torch.tasks.base import VAL_SEED_OFFSET


def parse_row(row: str) -> tuple[str, int, dict]:
    config, steps, *rest = row.split(":")
    return config, int(steps), parse_overrides(rest[0].split(",") if rest else [])


def print_table(table: dict[str, dict[str, list[float]]], knob: str = "warmup",
                ref: str | None = None) -> tuple[dict, dict]:
    """Print mean final loss per row and value (a markdown table) and per value the mean ratio to ``ref``
    (default: the smallest value), over the rows scanned at both."""
    ws = sorted({w for d in table.values() for w in d}, key=float)
    ref = ws[0] if ref is None else ref
    mean = {row: {w: sum(v) / len(v) for w, v in d.items()} for row, d in table.items()}
    print("\n| row | " + " | ".join(f"{knob} {w}" for w in ws) + " |\n|---|" + "---|" * len(ws))
    for row, d in mean.items():
        print(f"| {row} | " + " | ".join(f"{d[w]:.4f}" if w in d else "–" for w in ws) + " |")
    ratio, counts = {}, {}
    for w in ws:  # over the rows scanned at both w and ref
        rows = [d for d in mean.values() if w in d and ref in d]
        ratio[w], counts[w] = sum(d[w] / d[ref] for d in rows) / max(len(rows), 1), len(rows)
    print(f"| mean ratio to {knob} {ref} | " + " | ".join(f"{ratio[w]:.4f} ({counts[w]} rows)" for w in ws) + " |")
    return mean, ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", nargs="?")
    knob = ap.add_mutually_exclusive_group()
    knob.add_argument("--warmups", type=float, nargs="+", help="warm-ups W to scan (default 0 2 5 10)")
    knob.add_argument("--scales", type=float, nargs="+", help="update multipliers s to scan instead")
    ap.add_argument("--rows", nargs="+", help="CONFIG:STEPS[:KEY=VALUE,...]")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--seed-base", type=int, default=500, help="validation seeds from VAL_SEED_OFFSET + this")
    ap.add_argument("--out", help="write the figures as JSON here")
    ap.add_argument("--merge", nargs="+", metavar="JSON", help="only print one table from these scans' JSON")
    ap.add_argument("--ref", type=float, help="print each value's mean ratio to this one (default: the smallest)")
    args = ap.parse_args()
    ref = None if args.ref is None else f"{args.ref:g}"  # (the tables' keys)
    if args.merge:
        table, knobs = {}, set()
        for path in args.merge:
            with open(path) as f:
                scan = json.load(f)
            knobs.add(scan.get("knob", "warmup"))
            for row, d in scan["final_train_loss"].items():
                table.setdefault(row, {}).update(d)
        if len(knobs) > 1:
            raise SystemExit(f"these scans vary different knobs ({sorted(knobs)}); merge one kind at a time")
        print_table(table, knobs.pop(), ref)
        return
    if not (args.checkpoint and args.rows):
        ap.error("give a checkpoint and --rows (or --merge)")
    lopt, _ = load_learned_optimizer(args.checkpoint)
    knob, values = ("scale", args.scales) if args.scales else ("warmup", args.warmups or [0, 2, 5, 10])
    if knob == "warmup" and not hasattr(lopt, "warmup"):
        raise SystemExit(f"{args.checkpoint} holds a {lopt.arch_name!r} optimizer, which has no warm-up option")
    if knob == "scale" and min(values) <= 0:
        raise SystemExit(f"--scales must be > 0, got {values}")
    seeds = [VAL_SEED_OFFSET + args.seed_base + i for i in range(args.seeds)]
    table: dict[str, dict[str, list[float]]] = {}
    for row in args.rows:
        config, steps, overrides = parse_row(row)
        family = task_family_from_config(config, overrides)
        table[row] = {}
        for w in values:
            if knob == "warmup":
                lopt.warmup = float(w)  # a schedule with no weights: the same theta at every W
            scale = float(w) if knob == "scale" else 1.0
            losses = []
            for s in seeds:
                r = train_optimizee(family.sample(s), partial(LearnedOptimizer, lopt=lopt, lr=scale), steps, s)
                losses.append(math.inf if r.diverged else r.final["train_loss"])
            table[row][f"{w:g}"] = losses
            print(f"{row} {knob} {w:g}: " + " ".join(f"{v:.4f}" for v in losses)
                  + f"  mean {sum(losses) / len(losses):.4f}", flush=True)
    mean, ratio = print_table(table, knob, ref)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"checkpoint": args.checkpoint, "knob": knob, "seeds": seeds, "final_train_loss": table,
                       "mean": mean, "mean_ratio": ratio}, f, indent=1)


if __name__ == "__main__":
    main()
