"""How far two evaluations of the same learned optimizer on the same instances differ, seed by seed.

    python -m research.tools.rounding_spread NAME=A/results.json,B/results.json [NAME=...] [--keys test_accuracy,train_loss]

``A`` and ``B`` are ``evaluate.py`` outputs of one checkpoint on the same task, steps and seeds that differ only in
how the computation rounds (the number of CPU threads, the CPU, the library build). A run is deterministic for one
such setting, so any difference is rounding that the optimizee's training amplified. Prints one Markdown row per
pair: for each key, the learned row's mean in A and in B and the largest per-seed difference, as a share of the mean
where the key is a loss.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from research.tools.research_report import learned_name

_SAME = ("task", "steps", "seeds", "first_seed", "overrides")


def spread(a: dict[str, Any], b: dict[str, Any], key: str) -> tuple[float, float, float]:
    """``(mean in a, mean in b, largest |b - a| over the seeds)`` of ``key`` in the learned row of two results.

    Raises ValueError when the two are not evaluations of the same instances."""
    differ = [k for k in _SAME if a.get(k) != b.get(k)]
    if differ:
        raise ValueError(f"not the same evaluation: {differ} differ")
    xs, ys = (r["optimizers"][learned_name(r)]["per_seed"][key] for r in (a, b))
    if len(xs) != len(ys):
        raise ValueError(f"{key}: {len(xs)} seeds against {len(ys)}")
    return sum(xs) / len(xs), sum(ys) / len(ys), max(abs(y - x) for x, y in zip(xs, ys))


def _cell(key: str, mean_a: float, mean_b: float, largest: float) -> str:
    if "accuracy" in key:
        return f"{100 * mean_a:.2f} / {100 * mean_b:.2f} % | {100 * largest:.2f} points"
    return f"{mean_a:.4f} / {mean_b:.4f} | {largest:.4f} ({100 * largest / abs(mean_a):.1f} %)"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pairs", nargs="+", metavar="NAME=A,B", help="a row's name and its two results.json files")
    ap.add_argument("--keys", default="test_accuracy,train_loss", help="per-seed figures to compare")
    a = ap.parse_args(argv)
    keys = a.keys.split(",")
    head = " | ".join(f"{k}: A / B | largest per-seed difference" for k in keys)
    print(f"| evaluation | {head} |")
    print("|---|" + "---|---|" * len(keys))
    for pair in a.pairs:
        name, sep, files = pair.partition("=")
        paths = files.split(",")
        if not sep or len(paths) != 2:
            ap.error(f"{pair!r}: expected NAME=A/results.json,B/results.json")
        first, second = (json.loads(Path(p).read_text()) for p in paths)
        try:
            cells = [_cell(k, *spread(first, second, k)) for k in keys]
        except ValueError as e:
            ap.error(f"{name}: {e}")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
