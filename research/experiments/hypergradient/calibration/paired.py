"""Each hypergradient rate against the constant step, per instance (the same 24 validation instances and batches as
``general_step_calibration``, all starting from the shipped step, multiplier 1): the geometric mean of the final
training loss, its ratio to the constant step's with a Wilcoxon signed-rank test on the log ratios, and the final
lr factors the adaptation reached; and, as a bound, the best constant multiplier of each instance chosen after the
fact. The rate selected is the one of the lowest geometric mean.
Run from the repository root: python research/experiments/hypergradient/calibration/paired.py"""

import json
import math
import statistics
from pathlib import Path

from scipy.stats import wilcoxon

HERE = Path(__file__).parent
const_result = json.loads((HERE.parents[1] / "general_step_calibration" / "calibration.json").read_text())
const = const_result["runs"]
base = {r["seed"]: r["train_loss"] for r in const if r["multiplier"] == 1.0}
print(f"constant step (multiplier 1): geometric mean {const_result['scores']['1']:.4g}")
best = {}  # the best constant multiplier of each instance, chosen after the fact: a bound no single rule is given
for r in const:
    if r["train_loss"] is not None:
        best[r["seed"]] = min(best.get(r["seed"], math.inf), r["train_loss"])
print(f"the best constant multiplier per instance (from {sorted({r['multiplier'] for r in const})}, chosen after the "
      f"fact): geometric mean {statistics.geometric_mean(best.values()):.4g}")
scores = {}
for folder in sorted(HERE.glob("beta*"), key=lambda p: float(p.name.removeprefix("beta"))):
    result = json.loads((folder / "calibration.json").read_text())
    runs = {r["seed"]: r for r in result["runs"]}
    assert sorted(runs) == sorted(base) and result["beta"] == float(folder.name.removeprefix("beta"))
    scores[result["beta"]] = result["scores"]["1"]  # calibrate_step's geometric mean (infinite if a run diverged)
    if any(r["train_loss"] is None for r in runs.values()):
        print(f"beta {result['beta']:g}: a run diverged")
        continue
    logs = [math.log(runs[s]["train_loss"] / base[s]) for s in sorted(base)]
    factors = sorted(runs[s]["final_lr_factor"] for s in base)
    print(f"beta {result['beta']:g}: geometric mean {scores[result['beta']]:.4g}; over the constant step "
          f"{math.exp(sum(logs) / len(logs)):.3f}, lower on {sum(x < 0 for x in logs)} of {len(logs)}, Wilcoxon p "
          f"{wilcoxon(logs).pvalue:.2g}; final lr factor median {statistics.median(factors):.2f}, "
          f"range {factors[0]:.2f} to {factors[-1]:.2f}")
chosen = min(scores, key=scores.get)
edge = chosen in (min(scores), max(scores))
print(f"selected: beta {chosen:g}" + (" (on an edge of the grid: extend it)" if edge else " (inside the grid)"))
