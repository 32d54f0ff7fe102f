"""Constant against cosine-annealed step, per instance, at each multiplier both calibrations ran (same instances,
same batches): the geometric mean of the loss ratio cosine / constant and a Wilcoxon signed-rank test on the log
ratios. Run from the repository root: python research/experiments/general_step_calibration/cosine/paired.py"""

import json
import math
from pathlib import Path

from scipy.stats import wilcoxon

HERE = Path(__file__).parent
const = json.loads((HERE.parent / "calibration.json").read_text())["runs"]
cos = json.loads((HERE / "calibration.json").read_text())["runs"]
for m in sorted({r["multiplier"] for r in cos} & {r["multiplier"] for r in const}, reverse=True):
    a = {r["seed"]: r["train_loss"] for r in const if r["multiplier"] == m}
    b = {r["seed"]: r["train_loss"] for r in cos if r["multiplier"] == m}
    logs = [math.log(b[s] / a[s]) for s in sorted(a)]
    p = wilcoxon(logs).pvalue
    print(f"x{m:g}: cosine / constant geometric-mean loss ratio {math.exp(sum(logs) / len(logs)):.3f} over "
          f"{len(logs)} instances; cosine lower on {sum(x < 0 for x in logs)}; Wilcoxon p {p:.2g}")
