"""Table: the recommended small_fc_warmup_pes against tuned Adam, at the last iterate (research/experiments/family_rows_seeds10) and
both at the moving average of their iterates (research/experiments/family_rows_averaged); last two rows: Adam given the learned
optimizer's 10-step warm-up (research/experiments/warmup_control). Run from the repository root:
    python research/experiments/family_rows_averaged/summary.py > research/experiments/family_rows_averaged/table.md
Verdicts: paired t-test of the final training loss over the same seeds, Holm-corrected across every verdict cell of the
table (l2l_torch.stats).
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from l2l_torch.stats import paired_comparison  # noqa: E402
from research.tools.research_report import judge, p_cell  # noqa: E402

ROWS = ["fmnist_t1_sigmoid_100", "fmnist_t1_tanh_100", "fmnist_t1_relu_100", "fmnist_t1_sigmoid_200",
        "fmnist_t1_tanh_200", "fmnist_t1_relu_200", "cifar_convdense_300"]


def test(o: dict, against: str) -> dict:
    t = paired_comparison(o["small_fc"]["per_seed"]["train_loss"], o[against]["per_seed"]["train_loss"])
    return {**t, "paired": True, "lower_is_better": True, "status": None}


lines = []  # (row, at, optimizers, tuned, fixed)
for row in ROWS:
    for at, root in (("last iterate", "research/experiments/family_rows_seeds10"), ("average 0.9", "research/experiments/family_rows_averaged")):
        p = Path(root) / row / "results.json"
        if p.is_file():
            lines.append((row, at, json.loads(p.read_text())["optimizers"], "adam_tuned", "adam"))
# the warm-up control: Adam given the learned optimizer's 10-step warm-up (evaluate.py --baselines adam_warmup)
for at, p in (("last iterate", "research/experiments/warmup_control/cifar_convdense_300_tuned"),
              ("average 0.9", "research/experiments/family_rows_averaged/cifar_convdense_300_warmup")):
    lines.append(("cifar_convdense_300, Adam with warm-up", at, json.loads((Path(p) / "results.json").read_text())["optimizers"],
                  "adam_warmup_tuned", "adam_warmup"))
tests = [test(o, against) for _, _, o, tuned, fixed in lines for against in (tuned, fixed)]
judged = judge(tests)


def cell(i: int) -> str:
    (v, p), t = judged[i], tests[i]
    return f"{v} (d {t['mean_diff']:+.4f}, 95 % CI [{t['ci_low']:+.4f}, {t['ci_high']:+.4f}], p (Holm) {p_cell(p)})"


print("| row | at | small_fc_warmup_pes loss | tuned Adam loss (lr) | paired verdict | test acc. learned / Adam | "
      "Adam at lr 0.001 loss | paired verdict against it |")
print("|---|---|---|---|---|---|---|---|")
for i, (row, at, o, tuned, fixed) in enumerate(lines):
    lo, ad = o["small_fc"], o[tuned]
    print(f"| {row} | {at} | {lo['final_loss']['mean']:.4f} | {ad['final_loss']['mean']:.4f} ({ad['lr']:g}) | "
          f"{cell(2 * i)} | {100 * lo['test_accuracy']['mean']:.1f} / {100 * ad['test_accuracy']['mean']:.1f} | "
          f"{o[fixed]['final_loss']['mean']:.4f} | {cell(2 * i + 1)} |")
print(f"\nVerdicts: paired t-test of small_fc_warmup_pes minus the column's Adam over the same seeds, Holm-corrected across "
      f"the {len(tests)} verdict cells of this table (family-wise error 5 %): better / worse where the adjusted p-value is "
      "below 0.05, else level.")
