"""The `affnist` recipe's optimizers run with a longer step-size warm-up than they were meta-trained with, on
validation STNs (never test digits): does the 1s' growth fall, and at what cost in SSIM?

    L2L_DATA_DIR=../shared/data OMP_NUM_THREADS=1 python research/experiments/stn_longer_warmup/deployment_warmup.py \
        CKPT [CKPT ...] --warmups 10 30 60 --instances 8 --out probe.json
    python research/experiments/stn_longer_warmup/deployment_warmup.py --table probe.json [more.json ...]

Each checkpoint's warm-up is a schedule with no weights (the update of step t scaled by min(1, t / W)), so the same
theta runs at every W. Adam at ``--adam-lr`` (the recipe's tuned learning rate) runs on the same instances, for the
reference of the mass cap (1.1 x Adam's ratio). Instances are ``VAL_SEED_OFFSET + --seed-base + i``; the digits are
the validation splits ``val`` (8s), ``val6`` and ``val1``, images from the training data.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from functools import partial

import torch

from l2l_torch.checkpoint import load_learned_optimizer
from l2l_torch.cli import task_family_from_config
from l2l_torch.optim import LearnedOptimizer
from l2l_torch.tasks.base import VAL_SEED_OFFSET
from l2l_torch.training import train_optimizee

SPLITS = ("val", "val6", "val1")


def run(family, make_optimizer, seeds: list[int], steps: int) -> dict[str, list[float]]:
    """Per split, SSIM and mass ratio of every instance after ``steps`` steps."""
    out: dict[str, list[float]] = {}
    for s in seeds:
        task = family.sample(s)
        r = train_optimizee(task, make_optimizer, steps, s, keep_params=True)
        if r.diverged:
            raise RuntimeError(f"diverged on instance {s}")
        for split in SPLITS:
            m = task.evaluate(r.params, r.buffers, split)
            out.setdefault(f"{split}_ssim", []).append(m["ssim"])
            out.setdefault(f"{split}_mass_ratio", []).append(m["mass_ratio"])
    return out


def table(paths: list[str]) -> str:
    """A Markdown table of the probes' JSON: per row the mean over instances of SSIM and mass ratio on each split,
    then per warm-up the mean over checkpoints, and the cap (1.1 x Adam's ratio)."""
    rows: dict[str, dict[str, list[float]]] = {}
    for path in paths:
        with open(path) as f:
            rows.update(json.load(f)["rows"])
    cols = [f"{s}_{m}" for m in ("ssim", "mass_ratio") for s in SPLITS]
    mean = {k: {c: statistics.fmean(v[c]) for c in cols} for k, v in rows.items()}
    per_w: dict[str, list[dict[str, float]]] = {}
    for k, m in mean.items():
        if " warmup " in k:
            per_w.setdefault(k.rsplit(" ", 1)[1], []).append(m)
    lines = ["| row | SSIM 8s | 6s | 1s | mass ratio 8s | 6s | 1s |", "|---|" + "---|" * len(cols)]
    fmt = lambda name, m: f"| {name} | " + " | ".join(f"{m[c]:.4f}" for c in cols) + " |"  # noqa: E731
    lines += [fmt(k, m) for k, m in mean.items()]
    for w, ms in sorted(per_w.items(), key=lambda kv: float(kv[0])):
        lines.append(fmt(f"mean of {len(ms)} checkpoints, warm-up {w}", {c: statistics.fmean(m[c] for m in ms)
                                                                           for c in cols}))
    if "adam" in mean:
        lines.append("| cap: 1.1 x Adam's ratio | | | | " + " | ".join(f"{1.1 * mean['adam'][f'{s}_mass_ratio']:.4f}"
                                                                     for s in SPLITS) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="*")
    ap.add_argument("--table", nargs="+", metavar="JSON", help="only print the table of these probes' JSON")
    ap.add_argument("--warmups", type=float, nargs="+", default=[10, 30, 60])
    ap.add_argument("--instances", type=int, default=8)
    ap.add_argument("--seed-base", type=int, default=700)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--adam-lr", type=float, default=0.01)
    ap.add_argument("--no-adam", action="store_true", help="skip the Adam reference")
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.table:
        print(table(a.table))
        return
    if not (a.checkpoints and a.out):
        ap.error("give checkpoints and --out (or --table)")
    torch.manual_seed(0)
    family = task_family_from_config("affnist")
    seeds = [VAL_SEED_OFFSET + a.seed_base + i for i in range(a.instances)]
    result: dict = {"seeds": seeds, "steps": a.steps, "rows": {}}
    start = time.time()
    if not a.no_adam:
        result["rows"]["adam"] = run(family, lambda g: torch.optim.Adam(g, lr=a.adam_lr), seeds, a.steps)
    for ckpt in a.checkpoints:
        lopt, _ = load_learned_optimizer(ckpt)
        for w in a.warmups:
            lopt.warmup = float(w)
            key = f"{ckpt} warmup {w:g}"
            result["rows"][key] = run(family, partial(LearnedOptimizer, lopt=lopt), seeds, a.steps)
            means = {k: round(statistics.fmean(v), 4) for k, v in result["rows"][key].items()}
            print(key, means, f"{time.time() - start:.0f}s", flush=True)
    result["seconds"] = round(time.time() - start, 1)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
