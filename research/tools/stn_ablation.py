"""An ablation table of STN meta-training recipes: one row per recipe, averaged over its meta-training runs.

    python -m research.tools.stn_ablation "paper LSTM=research/experiments/lstm_stn/default_30min_idle,..." \
        "RNNprop=research/experiments/lstm_stn/rnnprop_30min,..." [--reference adam_tuned]

Each argument is ``NAME=DIR[,DIR...]``: the output folders of ``evaluate.py --task affnist`` for that
recipe's runs (one meta-training seed each, all evaluated on the same held-out STNs). Per row: the number of
runs, the mean over runs of each run's mean SSIM and foreground-mass ratio on unseen 8s, 6s and 1s with the
standard error over runs (sample std / sqrt(runs); "–" for one run), and how many runs meet each part of the
STN goal of :mod:`research.tools.stn_goal` (SSIM at least the reference's minus one SE, mass ratio within 0.8
and 1.1 x the reference's). A last row gives the reference itself, from the first run's folder.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from research.tools.research_report import learned_name
from research.tools.stn_goal import SETS, goal


def _mean_se(xs: list[float]) -> str:
    m = statistics.fmean(xs)
    se = statistics.stdev(xs) / len(xs) ** 0.5 if len(xs) > 1 else None
    return f"{m:.3f}" + (f" ± {se:.3f}" if se is not None else " (–)")


def row(name: str, dirs: list[Path], reference: str) -> tuple[str, dict[str, Any]]:
    """The Markdown row of one recipe, and the first run's results (for the reference row)."""
    runs = [json.loads((d / "results.json").read_text()) for d in dirs]
    goals = [goal(r, learned_name(r), reference) for r in runs]
    ssim = [_mean_se([g[i]["ssim"] for g in goals]) for i in range(len(SETS))]
    mass = [_mean_se([g[i]["mass"] for g in goals]) for i in range(len(SETS))]
    n_ssim = sum(all(r["ssim_met"] for r in g) for g in goals)
    n_all = sum(all(r["ssim_met"] and r["mass_met"] for r in g) for g in goals)
    cells = [name, str(len(runs)), *ssim, *mass, f"{n_ssim} / {len(runs)}", f"{n_all} / {len(runs)}"]
    return "| " + " | ".join(cells) + " |", runs[0]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rows", nargs="+", help="NAME=DIR[,DIR...]: one recipe's evaluate.py output folders")
    ap.add_argument("--reference", default="adam_tuned", help="the baseline of the goal (default adam_tuned)")
    a = ap.parse_args(argv)
    print("| recipe | runs | SSIM 8s | 6s | 1s | mass ratio 8s | 6s | 1s | runs at the SSIM goal "
          "| runs at the whole goal |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    first = None
    for spec in a.rows:
        name, sep, dirs = spec.partition("=")
        if not sep or not dirs:
            ap.error(f"expected NAME=DIR[,DIR...], got {spec!r}")
        line, res = row(name, [Path(d) for d in dirs.split(",")], a.reference)
        first = first or res
        print(line)
    ref = first["optimizers"][a.reference]
    cells = [f"{ref[f'{s}_{m}']['mean']:.3f}" for m in ("ssim", "mass_ratio") for s in SETS]
    print(f"| {a.reference} (the reference) | – | " + " | ".join(cells) + " | | |")


if __name__ == "__main__":
    main()
