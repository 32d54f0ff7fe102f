"""Table: the recommended small_fc_warmup_pes against tuned Adam, at the last iterate (research/experiments/family_rows_seeds10) and
both at the moving average of their iterates (research/experiments/family_rows_averaged); last two rows: Adam given the learned
optimizer's 10-step warm-up (research/experiments/warmup_control). Run from the repository root:
    python research/experiments/family_rows_averaged/summary.py > research/experiments/family_rows_averaged/table.md
"""
import json
import subprocess
import sys
from pathlib import Path

ROWS = ["fmnist_t1_sigmoid_100", "fmnist_t1_tanh_100", "fmnist_t1_relu_100", "fmnist_t1_sigmoid_200",
        "fmnist_t1_tanh_200", "fmnist_t1_relu_200", "cifar_convdense_300"]


def verdict(path: Path, against: str = "adam_tuned") -> str:
    out = subprocess.run([sys.executable, "research/tools/paired_verdicts.py", str(path), "--against", against],
                         capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1].split()
    return f"{' '.join(out[3:])} (d {out[1]}, SE {out[2]})"


print("| row | at | small_fc_warmup_pes loss | tuned Adam loss (lr) | paired verdict | test acc. learned / Adam | "
      "Adam at lr 0.001 loss | paired verdict against it |")
print("|---|---|---|---|---|---|---|---|")


def line(row: str, at: str, p: Path, tuned: str = "adam_tuned", fixed: str = "adam") -> None:
    o = json.loads(p.read_text())["optimizers"]
    lo, ad = o["small_fc"], o[tuned]
    print(f"| {row} | {at} | {lo['final_loss']['mean']:.4f} | {ad['final_loss']['mean']:.4f} ({ad['lr']:g}) | "
          f"{verdict(p, tuned)} | {100 * lo['test_accuracy']['mean']:.1f} / {100 * ad['test_accuracy']['mean']:.1f} | "
          f"{o[fixed]['final_loss']['mean']:.4f} | {verdict(p, fixed)} |")


for row in ROWS:
    for at, root in (("last iterate", "research/experiments/family_rows_seeds10"), ("average 0.9", "research/experiments/family_rows_averaged")):
        p = Path(root) / row / "results.json"
        if p.is_file():
            line(row, at, p)
# the warm-up control: Adam given the learned optimizer's 10-step warm-up (evaluate.py --baselines adam_warmup)
for at, p in (("last iterate", "research/experiments/warmup_control/cifar_convdense_300_tuned"),
              ("average 0.9", "research/experiments/family_rows_averaged/cifar_convdense_300_warmup")):
    line("cifar_convdense_300, Adam with warm-up", at, Path(p) / "results.json", "adam_warmup_tuned", "adam_warmup")
