"""The test-accuracy goal of a learned optimizer, from ``evaluate.py`` outputs of a classification task.

    python -m research.tools.accuracy_goal research/experiments/NAME/results.json [...] [--reference adam_tuned]

The goal is met when the learned optimizer's mean test accuracy over the held-out seeds is at least the reference's
minus one standard error of the reference's mean (sample std over the seeds / sqrt(seeds)), the SSIM rule of
:mod:`research.tools.stn_goal`. Prints one Markdown row per file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from l2l_torch.tasks.base import TEST_SEED_OFFSET
from research.tools.research_report import learned_name
from research.tools.stn_goal import mean_and_se

METRIC = "test_accuracy"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path, nargs="+", help="results.json files of evaluate.py")
    ap.add_argument("--reference", default="adam_tuned", help="the baseline of the goal (default adam_tuned)")
    a = ap.parse_args(argv)
    print(f"| results | seeds (first) | learned test accuracy (SE) | {a.reference} (SE) | goal | met |")
    print("|---|---|---|---|---|---|")
    for path in a.results:
        res = json.loads(path.read_text())
        opts = res["optimizers"]
        ours, ours_se = mean_and_se(opts[learned_name(res)], METRIC)
        ref, se = mean_and_se(opts[a.reference], METRIC)
        print(f"| {path} | {res['seeds']} ({res.get('first_seed', TEST_SEED_OFFSET)}) | {100 * ours:.2f} % "
              f"({100 * ours_se:.2f}) | {100 * ref:.2f} % ({100 * se:.2f}) | ≥ {100 * (ref - se):.2f} % | "
              f"{'yes' if ours >= ref - se else 'no'} |")


if __name__ == "__main__":
    main()
