"""Paired verdicts against tuned Adam, with the mean difference and its standard error.

    python scripts/paired_verdicts.py results/NAME/comparison.json COLUMN > results/NAME/paired.txt
    python scripts/paired_verdicts.py results/NAME/EVAL/results.json [OPTIMIZER]

The first form takes one column of a ``python -m l2l_torch.compare`` table (one row per evaluation), the second
one ``evaluate.py`` output (the learned optimizer by default). Per row: the mean over seeds of (COLUMN - tuned
Adam) final training loss, its standard error, and the verdict used across the project's tables
(:func:`l2l_torch.report.verdict`: better / worse when the mean difference exceeds 2 SE, else within noise).
"""

from __future__ import annotations

import json
import sys

from l2l_torch.report import learned_name, paired_difference, verdict_of


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    path, data = args[0], json.load(open(args[0]))
    if isinstance(data, dict):  # evaluate.py's results.json
        column = args[1] if len(args) > 1 else learned_name(data)
        rows = [{"eval": path, "adam_tuned": data["optimizers"]["adam_tuned"]["per_seed"]["train_loss"],
                 column: data["optimizers"][column]["per_seed"]["train_loss"]}]
    else:
        column, rows = args[1], data
    print(f"{'evaluation':<26} {'d (mean)':>9} {'SE':>7}  verdict   ({column} - adam_tuned, paired over seeds)")
    for row in rows:
        d, se = paired_difference(row[column], row["adam_tuned"])
        print(f"{row['eval']:<26} {d:>+9.4f} {se:>7.4f}  {verdict_of(d, se)}")


if __name__ == "__main__":
    main()
