"""Summarise the evaluations in this folder: learned optimizer vs learning-rate-tuned Adam.

    python research/experiments/lopt_small_fc_mix/summarize.py research/experiments/lopt_small_fc_mix [more folders...]

Reads every ``*/results.json`` below the given folders and writes ``summary.md`` and ``summary.json``
in the first folder: per evaluation, the final training loss (mean and std over seeds), the
ratio learned / tuned Adam, the seeds on which the learned optimizer is lower (paired by seed),
and the test accuracy where there is one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def row(path: Path) -> dict:
    r = json.loads(path.read_text())
    opts = r["optimizers"]
    learned = next(k for k in opts if not k.startswith(("adam", "rmsprop", "sgd", "adagrad")))
    lo, ad = opts[learned], opts["adam_tuned"]
    a, b = lo["per_seed"]["train_loss"], ad["per_seed"]["train_loss"]
    wins = sum(x < y for x, y in zip(a, b, strict=True))
    out = {"eval": str(path.parent.relative_to(path.parents[1])), "task": r["task"], "overrides": r.get("overrides", {}),
           "steps": r["steps"], "seeds": r["seeds"], "learned": learned,
           "learned_loss": lo["train_loss"]["mean"], "learned_std": lo["train_loss"]["std"],
           "learned_diverged": lo["diverged"], "adam_lr": ad["lr"], "adam_loss": ad["train_loss"]["mean"],
           "adam_std": ad["train_loss"]["std"], "ratio": lo["train_loss"]["mean"] / ad["train_loss"]["mean"],
           "wins": wins, "n": len(a)}
    for name, key in ((learned, "learned_acc"), ("adam_tuned", "adam_acc")):
        acc = opts[name].get("test_accuracy")
        if isinstance(acc, dict):
            out[key] = acc["mean"]
    return out


def main(folders: list[str]) -> None:
    rows = [row(p) for f in folders for p in sorted(Path(f).glob("*/results.json"))]
    head = ("| evaluation | steps | learned train loss | tuned Adam (lr) train loss | ratio | seeds lower | "
            "test acc learned / Adam |\n|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        acc = (f"{r['learned_acc']:.3f} / {r['adam_acc']:.3f}" if "learned_acc" in r and "adam_acc" in r else "")
        lines.append(f"| {r['eval']} | {r['steps']} | {r['learned_loss']:.4f} ± {r['learned_std']:.3f}"
                     f"{' (' + str(r['learned_diverged']) + ' diverged)' if r['learned_diverged'] else ''} | "
                     f"{r['adam_loss']:.4f} ± {r['adam_std']:.3f} ({r['adam_lr']:g}) | {r['ratio']:.3f} | "
                     f"{r['wins']}/{r['n']} | {acc} |")
    out = Path(folders[0])
    (out / "summary.md").write_text(head + "\n".join(lines) + "\n")
    (out / "summary.json").write_text(json.dumps(rows, indent=1))
    print(head + "\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:] or ["research/experiments/lopt_small_fc_mix"])
