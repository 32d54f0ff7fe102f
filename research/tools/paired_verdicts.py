"""Paired verdicts against tuned Adam, with the mean difference, its 95 % interval and the Holm-adjusted p-value.

    python -m research.tools.paired_verdicts research/experiments/NAME/comparison.json COLUMN > research/experiments/NAME/paired.txt
    python -m research.tools.paired_verdicts research/experiments/NAME/EVAL/results.json [...] [OPTIMIZER] [--key test8_ssim] [--seeds 5:10]
    python -m research.tools.paired_verdicts research/experiments/warmup_control/X.json small_fc --against adam_warmup10_lr0.003

The first form takes one column of a ``python -m research.tools.compare`` table (one row per evaluation), the second
one row per ``evaluate.py`` output (the learned optimizer by default). Per row: the mean over seeds of (COLUMN - tuned
Adam) final training loss, its 95 % confidence interval, the paired t-test's p-value, that p-value Holm-corrected across
the rows printed together (one family of tests), and the verdict of ``l2l_torch.stats``: better / worse where the adjusted
p-value is below 0.05, else level.

``--key`` judges another per-seed metric of an ``evaluate.py`` output (``*_ssim`` and ``*_accuracy`` are higher
is better: the difference is then tuned Adam minus COLUMN, so a negative d still means "better"). ``--seeds K:L``
keeps the held-out seeds K to L-1 only, e.g. the seeds that an evaluation with more seeds added to an earlier one.
``--against NAME`` pairs with another optimizer of the same ``results.json`` instead of tuned Adam (e.g. the
warm-up controls of ``research/tools/warmup_control.py``).
"""

from __future__ import annotations

import argparse
import json

from l2l_torch.stats import paired_comparison
from research.tools.research_report import higher_is_better, judge, learned_name, p_cell


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+", metavar="PATH [COLUMN]",
                    help="a comparison.json of research.tools.compare and its COLUMN, or results.json files of "
                         "evaluate.py, optionally followed by the optimizer judged (default: the learned one)")
    ap.add_argument("--key", default="train_loss", help="per-seed metric of a results.json (default train_loss)")
    ap.add_argument("--seeds", metavar="K:L", help="only held-out seeds K .. L-1 (Python slice)")
    ap.add_argument("--against", default="adam_tuned",
                    help="the optimizer of a results.json to pair with (default adam_tuned)")
    a = ap.parse_args(argv)
    paths, column = a.paths, None
    if not paths[-1].endswith(".json"):
        paths, column = paths[:-1], paths[-1]
    data = [json.load(open(p)) for p in paths]
    if all(isinstance(d, dict) for d in data):  # evaluate.py's results.json files
        names = [column or learned_name(d) for d in data]  # each file's own learned optimizer unless one is named
        rows = [{"eval": path, "adam_tuned": d["optimizers"][a.against]["per_seed"][a.key],
                 "judged": d["optimizers"][name]["per_seed"][a.key]} for path, d, name in zip(paths, data, names)]
        column = " / ".join(dict.fromkeys(names))
    else:
        if len(data) != 1 or column is None or a.key != "train_loss" or a.against != "adam_tuned":
            ap.error("a comparison.json comes alone, with its COLUMN, and holds final training losses only")
        # (--against is for results.json files only)
        rows = [{"eval": r["eval"], "adam_tuned": r["adam_tuned"], "judged": r[column]} for r in data[0]]
    cut = slice(*(int(x) if x else None for x in a.seeds.split(":"))) if a.seeds else slice(None)
    flip = higher_is_better(a.key)
    what = f"{a.against} - {column}" if flip else f"{column} - {a.against}"
    key = "" if a.key == "train_loss" else f", {a.key}"
    seeds = f", seeds {a.seeds}" if a.seeds else ""
    tests = []
    for row in rows:
        mine, adam = row["judged"][cut], row["adam_tuned"][cut]
        t = paired_comparison(adam, mine) if flip else paired_comparison(mine, adam)
        tests.append({**t, "paired": True, "lower_is_better": True, "status": None})
    print(f"{'evaluation':<26} {'d (mean)':>9} {'95 % CI':>19} {'p':>7} {'p (Holm)':>8}  verdict   "
          f"({what}{key}, paired over seeds{seeds}; Holm across {len(rows)} row{'s' * (len(rows) > 1)})")
    for row, t, (v, p_adj) in zip(rows, tests, judge(tests)):
        if t["n"] < 2:
            print(f"{row['eval']:<26} {'–':>9} {'–':>19} {'–':>7} {'–':>8}  fewer than two seeds")
            continue
        ci = "–" if t["ci_low"] != t["ci_low"] else f"[{t['ci_low']:+.4f}, {t['ci_high']:+.4f}]"
        print(f"{row['eval']:<26} {t['mean_diff']:>+9.4f} {ci:>19} {p_cell(t['p']):>7} {p_cell(p_adj):>8}  {v}")

if __name__ == "__main__":
    main()
