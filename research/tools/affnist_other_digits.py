"""Would the other digits tell which learning rate keeps the STN brief's 1s in shape? Train Adam on the held-out STN
instances at several learning rates, at the last iterate and at the moving average of the iterates, and report the
foreground-mass ratio of the *other* digits (the validation images of 0, 2, 3, 4, 5, 7, 9 of ``STNFamily(aux_digits)``,
never the test digits) beside the test sets' SSIM and mass ratios.

    L2L_DATA_DIR=../shared/data OMP_NUM_THREADS=1 python -m research.tools.affnist_other_digits \\
        --lrs 0.005,0.01,0.015,0.02,0.025 --average 0.9 --out research/experiments/affnist_average/other_digits.json

Same held-out instances (initial weights, batches) as ``evaluate.py --task affnist --seeds 5``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from l2l_torch.evaluation import baseline_factory, train_optimizee
from l2l_torch.tasks.base import TEST_SEED_OFFSET
from research.tools.stn_aux import OTHER_DIGITS as AUX_DIGITS
from research.tools.stn_aux import AuxSTNFamily as STNFamily


def run(family: STNFamily, lr: float, average: float | None, seeds: int, steps: int) -> dict[str, float]:
    """Means over ``seeds`` of the test sets' final metrics and of each other digit's mass ratio."""
    rows = []
    for i in range(seeds):
        seed = TEST_SEED_OFFSET + i
        task = family.sample(seed)
        r = train_optimizee(task, baseline_factory("adam", lr), steps, seed, keep_params=True, average=average)
        with torch.no_grad():
            per_digit = task.digit_mass_ratios(r.params, r.buffers, task.data.aux_val).tolist()
        row = {k: v for k, v in r.final.items() if k.startswith("test")}
        row.update({f"other{d}_mass_ratio": m for d, m in zip(AUX_DIGITS, per_digit, strict=True)})
        rows.append(row)
    return {k: sum(r[k] for r in rows) / seeds for k in rows[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lrs", default="0.005,0.01,0.015,0.02,0.025", help="comma-separated Adam learning rates")
    ap.add_argument("--average", type=float, default=0.9, help="decay of the moving average (each lr runs both ways)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    family = STNFamily(aux_digits=AUX_DIGITS)
    out = {"steps": a.steps, "seeds": a.seeds, "other_digits": list(AUX_DIGITS), "rows": {}}
    for lr in (float(x) for x in a.lrs.split(",")):
        for avg in (None, a.average):
            name = f"adam@{lr:g}" + ("" if avg is None else f",ema{avg:g}")
            out["rows"][name] = r = run(family, lr, avg, a.seeds, a.steps)
            others = [r[f"other{d}_mass_ratio"] for d in AUX_DIGITS]
            print(f"{name:18s} SSIM 8/6/1 {r['test8_ssim']:.3f} {r['test6_ssim']:.3f} {r['test1_ssim']:.3f}  "
                  f"mass 8/6/1 {r['test8_mass_ratio']:.2f} {r['test6_mass_ratio']:.2f} {r['test1_mass_ratio']:.2f}  "
                  f"other digits' mass {min(others):.2f}-{max(others):.2f}", flush=True)
    Path(a.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
