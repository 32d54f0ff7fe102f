"""Rewrite committed ``results.json`` files in the compact form that ``evaluate.py`` now writes
(:func:`l2l_torch.plots.results_json`: curves of 400 steps or more thinned to every k-th step, curves to 4
significant digits, number lists on one line).

    python -m research.tools.compact_results research/experiments

Per-seed values, summaries and every other field are kept exactly; only the per-step curves are thinned and rounded.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from l2l_torch.plots import results_json


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", type=Path)
    a = p.parse_args(argv)
    before = after = 0
    for folder in a.folders:
        for path in sorted(folder.rglob("results.json")):
            text = path.read_text()
            new = results_json(json.loads(text))
            before, after = before + len(text), after + len(new)
            if new != text:
                path.write_text(new)
    print(f"{before / 1e6:.1f} MB -> {after / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
