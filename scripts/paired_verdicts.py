"""Paired verdicts of one column of a ``python -m l2l_torch.compare`` table against tuned Adam.

    python scripts/paired_verdicts.py results/NAME/comparison.json COLUMN > results/NAME/paired.txt

Per row: the mean over seeds of (COLUMN - tuned Adam) final training loss, its standard error, and the
verdict used across the project's tables (better / worse when the mean difference exceeds 2 SE, else
within noise).
"""

from __future__ import annotations

import json
import statistics
import sys


def main(argv: list[str] | None = None) -> None:
    path, column = (argv or sys.argv[1:])[:2]
    print(f"{'evaluation':<26} {'d (mean)':>9} {'SE':>7}  verdict   ({column} - adam_tuned, paired over seeds)")
    for row in json.load(open(path)):
        diff = [b - a for a, b in zip(row["adam_tuned"], row[column], strict=True)]
        d, se = statistics.mean(diff), statistics.stdev(diff) / len(diff) ** 0.5
        verdict = "better" if d < -2 * se else "worse" if d > 2 * se else "within noise"
        print(f"{row['eval']:<26} {d:>+9.4f} {se:>7.4f}  {verdict}")


if __name__ == "__main__":
    main()
