"""Rewrite committed ``results.json`` and ``updates.json`` files in the compact form that ``evaluate.py`` now
writes (:func:`l2l_torch.plots.results_json`: curves of 400 steps or more thinned to every k-th step, curves to 4
significant digits, number lists on one line, no space after a colon or a comma outside strings; :func:`l2l_torch.plots.updates_json`: each update histogram's bin
edges given by their range).

    python -m research.tools.compact_results research/experiments

Per-seed values, summaries and every other field are kept exactly; only the per-step curves of ``results.json`` are
thinned and rounded, and ``updates.json`` loses nothing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from l2l_torch.plots import results_json, updates_json


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", type=Path)
    a = p.parse_args(argv)
    before = after = 0
    for folder in a.folders:
        for path in sorted([*folder.rglob("results.json"), *folder.rglob("updates.json")]):
            text = path.read_text()
            new = (results_json if path.name == "results.json" else updates_json)(json.loads(text))
            before, after = before + len(text), after + len(new)
            if new != text:
                path.write_text(new)
    print(f"{before / 1e6:.1f} MB -> {after / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
