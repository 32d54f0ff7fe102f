"""Generalisation suites: a learned optimizer meta-trained on one setting, evaluated on others.

    python -m research.tools.generalize research/experiments/generalization/suite.yaml [--out research/experiments/generalization] [--quick]

A suite file names the base task (the config the optimizer was meta-trained with), the checkpoint,
optionally ``steps``, ``seeds``, ``tune_seeds`` and ``baselines`` (default: all four), and one row per change (a task argument changed with ``set``, a different number of ``steps``, or a
different ``checkpoint`` for optimizers meta-trained differently). Each row runs ``evaluate.py`` with
those overrides into ``OUT/<row name>/`` (the same tuned baselines and the same outputs as any
evaluation), so ``python -m research.tools.research_report`` picks the rows up.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from l2l_torch.cli import UserError, fail


def load_suite(path: str | Path) -> dict[str, Any]:
    """Read and check a suite file. Raises :class:`UserError` with one sentence when it is wrong."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"suite file not found: {path}")
    suite = yaml.safe_load(path.read_text()) or {}
    for key in ("base_task", "checkpoint", "rows"):
        if key not in suite:
            raise UserError(f"{path}: missing key {key!r}")
    names = [r.get("name") for r in suite["rows"]]
    if None in names or len(set(names)) != len(names):
        raise UserError(f"{path}: every row needs a unique name")
    for r in suite["rows"]:
        unknown = set(r) - {"name", "what", "from", "to", "set", "steps", "checkpoint", "task", "baselines"}
        if unknown:
            raise UserError(f"{path}: row {r['name']!r} has unknown keys {sorted(unknown)}")
    return suite


def row_args(suite: dict[str, Any], row: dict[str, Any], out: Path, quick: bool) -> list[str]:
    """``evaluate.py`` arguments of one row."""
    args = ["--task", row.get("task", suite["base_task"]), "--checkpoint", str(row.get("checkpoint", suite["checkpoint"])),
            "--out", str(out / row["name"])]
    steps = row.get("steps", suite.get("steps"))
    seeds, tune_seeds = suite.get("seeds", 5), suite.get("tune_seeds", 3)
    if quick:
        steps, seeds, tune_seeds = min(steps or 5, 5), 2, 1
    if steps:
        args += ["--steps", str(steps)]
    args += ["--seeds", str(seeds), "--tune-seeds", str(tune_seeds)]
    baselines = row.get("baselines", suite.get("baselines"))
    if baselines:
        args += ["--baselines", ",".join(baselines) if isinstance(baselines, list) else str(baselines)]
    for k, v in (row.get("set") or {}).items():
        args += ["--set", f"{k}={json.dumps(v, separators=(',', ':'))}"]  # one shell word: hidden=[20,20]
    return args


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("suite", help="suite YAML (e.g. research/experiments/generalization/suite.yaml)")
    p.add_argument("--out", default="research/experiments/generalization")
    p.add_argument("--rows", help="comma-separated row names to run (default: all)")
    p.add_argument("--quick", action="store_true", help="2 seeds, at most 5 steps: a smoke test")
    p.add_argument("--baselines", help="override the suite's baselines (comma-separated), e.g. adam")
    a = p.parse_args(argv)
    try:
        suite = load_suite(a.suite)
    except UserError as e:
        fail(str(e))
    rows = suite["rows"]
    if a.rows:
        wanted = a.rows.split(",")
        missing = sorted(set(wanted) - {r["name"] for r in rows})
        if missing:
            fail(f"unknown row(s) {missing}; the suite has {[r['name'] for r in rows]}")
        rows = [r for r in rows if r["name"] in wanted]
    import evaluate

    if a.baselines:
        suite["baselines"] = a.baselines
    for row in rows:
        args = row_args(suite, row, Path(a.out), a.quick)
        print(f"[generalize] {row['name']}: python evaluate.py {' '.join(args)}", flush=True)
        evaluate.main(args)
        res_path = Path(a.out) / row["name"] / "results.json"
        res = json.loads(res_path.read_text())
        res["generalization"] = {k: row.get(k) for k in ("what", "from", "to")} | {"suite": str(a.suite)}
        res_path.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    sys.exit(main())
