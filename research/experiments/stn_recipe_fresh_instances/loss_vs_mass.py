"""Does an optimizer that fits the STN's training loss better enlarge the unseen 1s more?

    python research/experiments/stn_recipe_fresh_instances/loss_vs_mass.py runs/fresh_stn/recipe \
        runs/fresh_stn/paper_lstm runs/fresh_stn/five/*/ > research/experiments/stn_recipe_fresh_instances/loss_vs_mass.txt

Each argument is an ``evaluate.py --task affnist`` output folder on the same held-out STNs. Per optimizer (the learned
one of every folder; the baselines once, from the first folder, since the others reuse them): the mean over the
seeds of the final training loss, of the 1s' foreground-mass ratio and of their SSIM, sorted by the loss; then
Spearman's rank correlation of the loss with each (``scipy.stats.spearmanr``) over those optimizers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from scipy.stats import spearmanr

FIGURES = ("train_loss", "test1_mass_ratio", "test1_ssim")


def rows(folders: list[Path]) -> list[tuple[str, list[float]]]:
    out = []
    for i, folder in enumerate(folders):
        res = json.loads((folder / "results.json").read_text())
        for name, o in res["optimizers"].items():
            if i > 0 and o.get("lr") is not None:  # a reused baseline: listed once
                continue
            per_seed = o["per_seed"]
            label = f"{folder.name}: {name}" if o.get("lr") is None else name
            out.append((label, [sum(per_seed[k]) / len(per_seed[k]) for k in FIGURES]))
    return sorted(out, key=lambda r: r[1][0])


def main(argv: list[str]) -> None:
    table = rows([Path(a) for a in argv])
    print("| optimizer | final train loss | 1s mass ratio | 1s SSIM |")
    print("|---|---|---|---|")
    for label, (loss, mass, ssim) in table:
        print(f"| {label} | {loss:.4f} | {mass:.3f} | {ssim:.3f} |")
    loss = [r[1][0] for r in table]
    for j, what in ((1, "1s mass ratio"), (2, "1s SSIM")):
        rho, p = spearmanr(loss, [r[1][j] for r in table])
        print(f"\nSpearman's rank correlation of the final training loss with the {what} over these {len(table)} "
              f"optimizers: {rho:+.2f} (p {p:.2g})")


if __name__ == "__main__":
    main(sys.argv[1:])
