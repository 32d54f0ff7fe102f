"""The STN goal of a learned optimizer, per digit set, from an ``evaluate.py --task affnist`` output.

    python -m research.tools.stn_goal research/experiments/NAME/results.json [--reference adam_tuned]

Per digit set (unseen 8s, 6s, 1s), the goal is met when
- the learned optimizer's mean SSIM is at least the reference's minus one standard error of the reference's mean
  (sample std over the held-out seeds / sqrt(seeds)), and
- its mean foreground-mass ratio is at least 0.8 and at most 1.1 x the reference's on the same set.
Prints a Markdown table with the figures, the bounds and whether each is met.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from l2l_torch.tasks.base import TEST_SEED_OFFSET
from research.tools.research_report import learned_name

SETS = ("test8", "test6", "test1")
MASS_FLOOR, MASS_FACTOR = 0.8, 1.1


def mean_and_se(summary: dict[str, Any], metric: str) -> tuple[float, float]:
    """The mean of ``metric`` over an optimizer's held-out seeds and its standard error (sample std / sqrt(n))."""
    xs = [x for x in summary["per_seed"][metric] if x is not None]
    return statistics.fmean(xs), statistics.stdev(xs) / len(xs) ** 0.5


def goal(results: dict[str, Any], learned: str, reference: str = "adam_tuned") -> list[dict[str, Any]]:
    """One row per digit set: the learned and reference means, the bounds and whether each part is met."""
    lo, ref = results["optimizers"][learned], results["optimizers"][reference]
    rows = []
    for s in SETS:
        ref_ssim, se = mean_and_se(ref, f"{s}_ssim")
        ssim_bar = ref_ssim - se
        mass_cap = MASS_FACTOR * ref[f"{s}_mass_ratio"]["mean"]
        ours, mass = lo[f"{s}_ssim"]["mean"], lo[f"{s}_mass_ratio"]["mean"]
        rows.append({"set": s, "ssim": ours, "ref_ssim": ref_ssim, "ref_se": se, "ssim_bar": ssim_bar,
                     "ssim_met": ours >= ssim_bar, "mass": mass, "mass_cap": mass_cap,
                     "mass_met": MASS_FLOOR <= mass <= mass_cap})
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path, help="results.json of evaluate.py --task affnist")
    ap.add_argument("--reference", default="adam_tuned", help="the baseline of the goal (default adam_tuned)")
    a = ap.parse_args(argv)
    res = json.loads(a.results.read_text())
    learned = learned_name(res)
    first = res.get("first_seed", TEST_SEED_OFFSET)
    print(f"{learned} against {a.reference}, {res['seeds']} held-out seeds from {first}\n")
    print("| digit set | SSIM | reference SSIM (SE) | SSIM goal | met | mass ratio | mass goal | met |")
    print("|---|---|---|---|---|---|---|---|")
    for r in goal(res, learned, a.reference):
        print(f"| {r['set'].removeprefix('test')}s | {r['ssim']:.4f} | {r['ref_ssim']:.4f} ({r['ref_se']:.4f}) | "
              f"≥ {r['ssim_bar']:.4f} | {'yes' if r['ssim_met'] else 'no'} | {r['mass']:.3f} | "
              f"{MASS_FLOOR} – {r['mass_cap']:.3f} | {'yes' if r['mass_met'] else 'no'} |")


if __name__ == "__main__":
    main()
