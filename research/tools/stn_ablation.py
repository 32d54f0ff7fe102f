"""An ablation table of STN meta-training recipes: one row per recipe, averaged over its meta-training runs.

    python -m research.tools.stn_ablation "paper LSTM=research/experiments/lstm_stn/default_30min_idle,..." \
        "RNNprop=research/experiments/lstm_stn/rnnprop_30min,..." [--reference adam_tuned]

Each argument is ``NAME=DIR[,DIR...]``: the output folders of ``evaluate.py --task affnist`` for that
recipe's runs (one meta-training seed each, all evaluated on the same held-out STNs against the same reference runs:
checked, since tuned Adam's figures move between machines). Per row: the number of
runs, the mean over runs of each run's mean SSIM and foreground-mass ratio on unseen 8s, 6s and 1s with the
standard error over runs (sample std / sqrt(runs); "–" for one run), and how many runs meet each part of the
STN goal of :mod:`research.tools.stn_goal` (SSIM at least the reference's minus one SE, mass ratio within 0.8
and 1.1 x the reference's). A last row gives the reference itself, from the first run's folder.

``--versus-first`` adds, below the table, each later recipe against the first on each of the six figures: the
difference of the means over runs, and Welch's t-test over the runs' means (the runs of two recipes are
different meta-training runs, so the test is unpaired), Holm-corrected across every test listed. With
``--paired`` the later recipes are other checkpoints of the first recipe's runs, listed in the same order (for
example the last meta-step of each run against the one validation selected): the test is then the paired t-test
over the runs.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from l2l_torch.stats import ALPHA, holm, paired_comparison, unpaired_comparison, verdict
from research.tools.research_report import learned_name
from research.tools.stn_goal import SETS, goal

#: a figure compared between recipes: its label, its value in one run's record, and whether higher is better (None:
#: no direction, the figure's goal is a band, so a difference is only "differs" or "level")
Figure = tuple[str, Callable[[Any], float], bool | None]

#: the STN's figures, read from a run's :func:`goals_of` rows
FIGURES: list[Figure] = [(f"SSIM {s[4:]}s", lambda g, i=i: g[i]["ssim"], True) for i, s in enumerate(SETS)] + \
    [(f"mass ratio {s[4:]}s", lambda g, i=i: g[i]["mass"], None) for i, s in enumerate(SETS)]


def mean_se(xs: list[float], scale: float = 1.0, digits: int = 3) -> str:
    """``scale`` times the mean of ``xs`` and its standard error over them ("(–)" for one value), as a cell."""
    m = scale * statistics.fmean(xs)
    se = scale * statistics.stdev(xs) / len(xs) ** 0.5 if len(xs) > 1 else None
    return f"{m:.{digits}f}" + (f" ± {se:.{digits}f}" if se is not None else " (–)")


def read_runs(dirs: list[Path]) -> list[dict[str, Any]]:
    """The ``results.json`` of each run's evaluation folder."""
    return [json.loads((d / "results.json").read_text()) for d in dirs]


def goals_of(runs: list[dict[str, Any]], reference: str) -> list[list[dict[str, Any]]]:
    """Per run (its results): the rows of :func:`~research.tools.stn_goal.goal` against ``reference``."""
    return [goal(r, learned_name(r), reference) for r in runs]


def check_same_reference(recipes: list[tuple[str, list[Path], list[dict[str, Any]]]], reference: str,
                         metrics: list[str]) -> None:
    """Raise ValueError unless every run (``recipes``: name, its folders and their results) was judged against the
    same ``reference`` runs, their per-seed ``metrics`` equal: runs on other held-out instances, or against a
    reference tuned or trained elsewhere (another machine rounds otherwise), cannot share one table."""
    first = None
    for name, dirs, runs in recipes:
        for d, res in zip(dirs, runs):
            if reference not in res["optimizers"]:
                raise ValueError(f"{d}: no {reference!r} in its results.json")
            per_seed = res["optimizers"][reference]["per_seed"]
            ref = [per_seed.get(m) for m in metrics]
            first = first if first is not None else (d, ref)
            if ref != first[1]:
                raise ValueError(f"{d} ({name}) was judged against other {reference} runs than {first[0]}")


def versus_first(recipes: list[tuple[str, list[Any]]], paired: bool = False,
                 figures: list[Figure] = FIGURES) -> list[str]:
    """Lines comparing each recipe after the first with the first (``recipes``: name and its runs' records, by
    default :func:`goals_of` rows), on every figure of ``figures``: the difference of the means over runs, the
    p-value of Welch's t-test (``paired``: of the paired t-test over runs, the recipes' runs listed in the same
    order) and its Holm adjustment across all the tests listed, and the verdict at 5 %. A figure without a
    direction (the STN's mass ratios, whose goal is a band) gets "differs" or "level". A test without a p-value
    (fewer than two runs, or a paired difference without spread) counts as p = 1.

    Raises:
        ValueError: ``paired`` and a recipe has another number of runs than the first.
    """
    (first, base), tests = recipes[0], []
    for name, runs in recipes[1:]:
        if paired and len(runs) != len(base):
            raise ValueError(f"cannot pair the {len(runs)} runs of {name!r} with the {len(base)} of {first!r}")
        for label, value, higher in figures:
            a, b = ([value(r) for r in rs] for rs in (runs, base))
            if paired:
                t = paired_comparison(a, b)
            else:
                sd = [statistics.stdev(x) if len(x) > 1 else float("nan") for x in (a, b)]
                t = unpaired_comparison((statistics.fmean(a), sd[0], len(a)), (statistics.fmean(b), sd[1], len(b)),
                                        population_std=False)
            tests.append((name, label, higher, t))
    adjusted = holm([1.0 if math.isnan(t["p"]) else t["p"] for *_, t in tests])
    test = "the paired t-test over the runs" if paired else "Welch's t-test over the runs' means"
    lines = [f"Against the first recipe ({first}): difference of the means over runs, {test}, Holm-corrected "
             f"across these {len(tests)} tests.", "",
             "| recipe | figure | difference | p | p (Holm) | verdict |", "|---|---|---|---|---|---|"]
    for (name, label, higher, t), p in zip(tests, adjusted):
        v = ("differs" if p < ALPHA else "level") if higher is None else \
            verdict(t["mean_diff"], p, lower_is_better=not higher)
        lines.append(f"| {name} | {label} | {t['mean_diff']:+.3f} | {t['p']:.2g} | {p:.2g} | {v} |")
    return lines


def parse_recipes(ap: argparse.ArgumentParser, specs: list[str]) -> list[tuple[str, list[Path]]]:
    """The ``NAME=DIR[,DIR...]`` arguments as (name, folders); a malformed one is an argparse error."""
    out = []
    for spec in specs:
        name, sep, dirs = spec.partition("=")
        if not sep or not dirs:
            ap.error(f"expected NAME=DIR[,DIR...], got {spec!r}")
        out.append((name, [Path(d) for d in dirs.split(",")]))
    return out


def row(name: str, dirs: list[Path], reference: str) -> tuple[str, dict[str, Any]]:
    """The Markdown row of one recipe, and the first run's results (for the reference row)."""
    runs = read_runs(dirs)
    return row_of(name, goals_of(runs, reference)), runs[0]


def row_of(name: str, goals: list[list[dict[str, Any]]]) -> str:
    """The Markdown row of one recipe from its runs' :func:`goals_of` rows."""
    ssim = [mean_se([g[i]["ssim"] for g in goals]) for i in range(len(SETS))]
    mass = [mean_se([g[i]["mass"] for g in goals]) for i in range(len(SETS))]
    n_ssim = sum(all(r["ssim_met"] for r in g) for g in goals)
    n_all = sum(all(r["ssim_met"] and r["mass_met"] for r in g) for g in goals)
    cells = [name, str(len(goals)), *ssim, *mass, f"{n_ssim} / {len(goals)}", f"{n_all} / {len(goals)}"]
    return "| " + " | ".join(cells) + " |"


def ablation_parser(doc: str | None) -> argparse.ArgumentParser:
    """The arguments of an ablation table: its recipes (``NAME=DIR[,DIR...]``), ``--reference`` and
    ``--versus-first``."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rows", nargs="+", help="NAME=DIR[,DIR...]: one recipe's evaluate.py output folders")
    ap.add_argument("--reference", default="adam_tuned", help="the baseline of the goal (default adam_tuned)")
    ap.add_argument("--versus-first", action="store_true",
                    help="below the table, each later recipe against the first (Welch, Holm-corrected)")
    return ap


def main(argv: list[str] | None = None) -> None:
    ap = ablation_parser(__doc__)
    ap.add_argument("--paired", action="store_true",
                    help="with --versus-first: the recipes are checkpoints of the same runs, in the same order "
                         "(paired t-test over the runs)")
    a = ap.parse_args(argv)
    if a.paired and not a.versus_first:
        ap.error("--paired goes with --versus-first")
    loaded = [(name, dirs, read_runs(dirs)) for name, dirs in parse_recipes(ap, a.rows)]
    try:  # before any goal is read from them
        check_same_reference(loaded, a.reference, [f"{s}_ssim" for s in SETS])
    except ValueError as e:
        ap.error(str(e))
    first = loaded[0][2][0]
    recipes = [(name, goals_of(runs, a.reference)) for name, _, runs in loaded]
    comparison = []
    if a.versus_first and len(recipes) > 1:
        try:  # before any output: recipes that cannot be paired print nothing
            comparison = ["", *versus_first(recipes, a.paired)]
        except ValueError as e:
            ap.error(str(e))
    print("| recipe | runs | SSIM 8s | 6s | 1s | mass ratio 8s | 6s | 1s | runs at the SSIM goal "
          "| runs at the whole goal |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, goals in recipes:
        print(row_of(name, goals))
    ref = first["optimizers"][a.reference]
    cells = [f"{ref[f'{s}_{m}']['mean']:.3f}" for m in ("ssim", "mass_ratio") for s in SETS]
    print(f"| {a.reference} (the reference) | – | " + " | ".join(cells) + " | | |")
    if comparison:
        print("\n".join(comparison))


if __name__ == "__main__":
    main()
