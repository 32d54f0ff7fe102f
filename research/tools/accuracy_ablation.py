"""An ablation table of classification meta-training recipes: one row per recipe, over its meta-training runs.

    python -m research.tools.accuracy_ablation "meta-lr 0.003=DIR,DIR,..." "meta-lr 0.01=DIR,DIR,..." \
        [--reference adam_tuned] [--versus-first]

Each argument is ``NAME=DIR[,DIR...]``: the output folders of ``evaluate.py`` for that recipe's runs (one
meta-training run each), all evaluated on the same held-out instances against the same reference runs (checked:
the reference's per-seed test accuracies must agree in every folder). Per row: the number of runs; the range of
the meta-steps that validation selected (``checkpoint_meta.global_step``, "–" where not recorded); the mean over
runs of each run's mean test accuracy and final training loss, with the standard error over runs (sample std /
sqrt(runs); "–" for one run); how many runs meet the goal of :mod:`research.tools.accuracy_goal` (test accuracy
at least the reference's minus one standard error); and how many are better than the reference in test accuracy
by the paired t-test over the held-out seeds, Holm-corrected across every run of the table. A last row gives the
reference itself.

``--versus-first`` adds each later recipe against the first on both figures (Welch's t-test over the runs'
means, Holm-corrected across the tests listed), as :mod:`research.tools.stn_ablation` does for the STN.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from l2l_torch.stats import holm, paired_comparison, verdict
from research.tools.research_report import learned_name
from research.tools.stn_ablation import (
    Figure,
    ablation_parser,
    check_same_reference,
    mean_se,
    parse_recipes,
    read_runs,
    versus_first,
)
from research.tools.stn_goal import mean_and_se

METRIC, LOSS = "test_accuracy", "train_loss"

FIGURES: list[Figure] = [
    ("test accuracy", lambda res: mean_and_se(res["optimizers"][learned_name(res)], METRIC)[0], True),
    ("final training loss", lambda res: mean_and_se(res["optimizers"][learned_name(res)], LOSS)[0], False),
]


def better_counts(recipes: list[tuple[str, list[Path], list[dict[str, Any]]]], reference: str) -> list[int]:
    """Per recipe, its runs better than ``reference`` in test accuracy: the paired t-test over the held-out seeds,
    Holm-corrected across every run of every recipe."""
    tests = [paired_comparison(res["optimizers"][learned_name(res)]["per_seed"][METRIC],
                               res["optimizers"][reference]["per_seed"][METRIC])
             for _, _, runs in recipes for res in runs]
    adjusted = holm([1.0 if t["p"] != t["p"] else t["p"] for t in tests])
    better = [verdict(t["mean_diff"], p, lower_is_better=False) == "better" for t, p in zip(tests, adjusted)]
    counts, start = [], 0
    for _, _, runs in recipes:
        counts.append(sum(better[start:start + len(runs)]))
        start += len(runs)
    return counts


def selected_steps(runs: list[dict[str, Any]]) -> str:
    """The range of the meta-steps that validation kept in these runs, as recorded by ``evaluate.py``."""
    steps = [r.get("checkpoint_meta", {}).get("global_step") for r in runs]
    if any(s is None for s in steps):
        return "–"
    return f"{min(steps):,}" if min(steps) == max(steps) else f"{min(steps):,} – {max(steps):,}"


def main(argv: list[str] | None = None) -> None:
    ap = ablation_parser(__doc__)
    a = ap.parse_args(argv)
    recipes = [(name, dirs, read_runs(dirs)) for name, dirs in parse_recipes(ap, a.rows)]
    try:
        check_same_reference(recipes, a.reference, [METRIC])
    except ValueError as e:
        ap.error(str(e))
    ref_summary = recipes[0][2][0]["optimizers"][a.reference]
    ref_acc, ref_se = mean_and_se(ref_summary, METRIC)
    print(f"| recipe | runs | selected meta-steps | test accuracy (%) | final training loss "
          f"| runs at the goal (≥ {100 * (ref_acc - ref_se):.2f} %) "
          f"| runs better than {a.reference} (test accuracy, Holm across the table's runs) |")
    print("|---|---|---|---|---|---|---|")
    for (name, _, runs), better in zip(recipes, better_counts(recipes, a.reference)):
        acc, loss = ([value(res) for res in runs] for _, value, _ in FIGURES)
        met = sum(x >= ref_acc - ref_se for x in acc)
        print(f"| {name} | {len(runs)} | {selected_steps(runs)} | {mean_se(acc, 100, 2)} | {mean_se(loss)} "
              f"| {met} / {len(runs)} | {better} / {len(runs)} |")
    seeds = len(ref_summary["per_seed"][METRIC])
    print(f"| {a.reference} (the reference, {seeds} held-out instances) | – | – "
          f"| {100 * ref_acc:.2f} ± {100 * ref_se:.2f} | {mean_and_se(ref_summary, LOSS)[0]:.3f} | | |")
    if a.versus_first and len(recipes) > 1:
        print("\n" + "\n".join(versus_first([(name, runs) for name, _, runs in recipes], figures=FIGURES)))


if __name__ == "__main__":
    main()
