"""Do the baselines that committed evaluations reused (``evaluate.py --reuse-baselines``) still reproduce here?

    L2L_DATA_DIR=../shared/data OMP_NUM_THREADS=1 python -m research.tools.reuse_audit --out research/experiments/reuse_audit

Every ``results/**/results.json`` with ``baselines_from`` took its baselines from an earlier evaluation instead of
training them. This trains, for each such source, its tuned Adam on the first held-out seed again
(:func:`l2l_torch.evaluation.check_reuse`) and compares the final metrics with the stored ones. Training runs are
deterministic on one machine; a difference means the source was made on another CPU or with other libraries, so the
evaluations that reused it compare a learned optimizer run here with baselines run there. Writes ``audit.json`` and
``table.md`` (one row per source: its largest relative difference and the evaluations that reused it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def reuse_sources(root: Path) -> dict[str, list[str]]:
    """``{source folder: [folders of the evaluations that reused it]}`` under ``root``."""
    from research.tools.research_report import iter_results

    out: dict[str, list[str]] = {}
    for folder, res in iter_results(root):
        if res.get("baselines_from"):
            out.setdefault(str(Path(res["baselines_from"])), []).append(str(folder))
    return out


def main(argv: list[str] | None = None) -> None:
    from l2l_torch.cli import task_family_from_config
    from l2l_torch.evaluation import check_reuse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="results")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    rows = []
    for src, users in reuse_sources(Path(a.root)).items():
        res = json.loads((Path(src) / "results.json").read_text())
        family = task_family_from_config(res["task"], res.get("overrides") or {})
        chk = check_reuse(family, res["optimizers"], res["steps"],
                          progress=lambda m, s=src: print(f"{s}: {m}", flush=True))
        rows.append({"source": src, "task": res["task"], "steps": res["steps"], **chk, "used_by": users})
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "audit.json").write_text(json.dumps(rows, indent=1))
    lines = ["| source | task | steps | optimizer (lr) | stored train loss | again | largest rel. diff | reproduced | "
             "reused by |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["reproduced"] is None:
            lines.append(f"| {r['source']} | {r['task']} | {r['steps']} | – | – | – | – | nothing to check | "
                         f"{len(r['used_by'])} |")
            continue
        lines.append(f"| {r['source']} | {r['task']} | {r['steps']} | {r['optimizer']} ({r['lr']:g}) | "
                     f"{r['stored']['train_loss']:.4f} | {r['rerun']['train_loss']:.4f} | {r['max_rel_diff']:.2g} | "
                     f"{'yes' if r['reproduced'] else '**no**'} | {len(r['used_by'])} |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
