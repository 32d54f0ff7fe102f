"""The STN brief's two goals side by side: SSIM against foreground-mass ratio, for every optimizer evaluated on affnist.

    L2L_DATA_DIR=../shared/data OMP_NUM_THREADS=1 python -m research.tools.affnist_frontier \
        --reference research/experiments/affnist_hyper_adam/size/affnist_200_fresh/results.json \
        --lrs 0.002,0.003,0.005,0.007,0.01,0.015,0.02,0.03 --adamw-wds 0.1,0.3,0.5,0.7,1 \
        --ema 0.9 --ema-lrs 0.005,0.01,0.015,0.02,0.025,0.03 --out research/experiments/affnist_frontier

The STN brief asks the learned optimizer for (a) mean SSIM on unseen 8s, 6s and 1s at least tuned Adam's minus 0.02 and
(b) a mean foreground-mass ratio between 0.8 and 1.25 (on each of the three sets, as this project reads it; the
table and ``frontier.json`` also give the other reading, one mean over all unseen digits, as ``mass_pooled``). This
script checks both for every optimizer of every committed ``evaluate.py --task affnist --steps 200`` output
(``results/**/results.json``: learned optimizers and the torch.optim baselines) and, with ``--lrs``, for Adam at
a sweep of constant learning rates trained on the held-out instances of ``--reference`` (same initial weights
and batches as its rows), and with ``--adamw-wds`` for AdamW at the reference's tuned learning rate and a sweep of
(decoupled) weight decays, and with ``--ema-lrs`` for Adam at a sweep of learning rates evaluated at the exponential
moving average of its iterates (decay ``--ema``; ``evaluate.py --average``). The bar of (a) is ``--reference``'s tuned
Adam (the last iterate's, as the STN brief asks).

Writes ``frontier.json`` (every point, its source and which goals it meets), ``table.md`` and ``frontier.png``
(SSIM on the 1s, then on the 8s, against the 1s' mass ratio, with both goals' bounds drawn).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

DIGITS = (8, 6, 1)
SSIM_SLACK = 0.02
MASS_RANGE = (0.8, 1.25)


def points_of(results: dict[str, Any], source: str) -> list[dict[str, Any]]:
    """One point per optimizer of an affnist ``results.json``: mean SSIM and mass ratio per digit set."""
    out = []
    for name, r in results["optimizers"].items():
        if r.get("diverged") == results.get("seeds") or f"test{DIGITS[0]}_ssim" not in r:
            continue
        p = {"optimizer": name, "source": source, "lr": r.get("lr"), "seeds": results.get("seeds")}
        for d in DIGITS:
            p[f"ssim{d}"] = r[f"test{d}_ssim"]["mean"]
            p[f"mass{d}"] = r[f"test{d}_mass_ratio"]["mean"]
        out.append(p)
    return out


def judge(p: dict[str, Any], bar: dict[str, float]) -> dict[str, Any]:
    """Adds ``ssim_ok`` (goal a), ``mass_ok`` (goal b on each set) and ``both`` to a point; and, for the other
    reading of goal (b), ``mass_pooled`` (the mass ratio's mean over all unseen digits: the three sets are of
    equal size, so the mean of their means), ``mass_pooled_ok`` and ``both_pooled``."""
    p["ssim_ok"] = all(p[f"ssim{d}"] >= bar[f"ssim{d}"] - SSIM_SLACK for d in DIGITS)
    p["mass_ok"] = all(MASS_RANGE[0] <= p[f"mass{d}"] <= MASS_RANGE[1] for d in DIGITS)
    p["both"] = p["ssim_ok"] and p["mass_ok"]
    p["mass_pooled"] = sum(p[f"mass{d}"] for d in DIGITS) / len(DIGITS)
    p["mass_pooled_ok"] = MASS_RANGE[0] <= p["mass_pooled"] <= MASS_RANGE[1]
    p["both_pooled"] = p["ssim_ok"] and p["mass_pooled_ok"]
    return p


def committed_points(root: Path, steps: int) -> list[dict[str, Any]]:
    """Points of every committed affnist evaluation with ``steps`` optimizee steps under ``root`` (each distinct
    run once: the same optimizer with the same figures in several outputs is one point)."""
    from research.tools.research_report import iter_results

    pts, seen = [], set()
    for folder, res in iter_results(root):
        if res.get("task") == "affnist" and res.get("steps") == steps and not res.get("overrides"):
            for p in points_of(res, str(folder)):
                if res.get("average") is not None:  # evaluate.py --average: not the last iterate
                    p["optimizer"] += f",ema{res['average']:g}"
                key = tuple([p["optimizer"]] + [round(p[f"{m}{d}"], 6) for m in ("ssim", "mass") for d in DIGITS])
                if key not in seen:  # baselines reused by later evaluations (--reuse-baselines) count once
                    seen.add(key)
                    pts.append(p)
    return pts


def sweep(reference: dict[str, Any], runs: dict[str, Any], source: str,
          average: float | None = None) -> list[dict[str, Any]]:
    """Points of ``runs`` (name -> ``(optimizer factory, lr)``) trained on the reference's held-out instances (its
    steps and seeds), labelled ``source``; with ``average``, measured at that moving average of the iterates."""
    from l2l_torch.cli import task_family_from_config
    from l2l_torch.evaluation import compare

    family = task_family_from_config("affnist", {})
    res = compare(family, runs, reference["steps"], reference["seeds"],
                  progress=lambda name: print(f"  {name}", flush=True), average=average)
    return points_of({"optimizers": res, "seeds": reference["seeds"]}, source)


def adam_sweep(reference: dict[str, Any], lrs: list[float], average: float | None = None) -> list[dict[str, Any]]:
    """Adam at each constant ``lr`` (evaluated at the moving average of its iterates with decay ``average``)."""
    from l2l_torch.evaluation import baseline_factory

    tag = "" if average is None else f",ema{average:g}"
    return sweep(reference, {f"adam@{lr:g}{tag}": (baseline_factory("adam", lr), lr) for lr in lrs},
                 "adam sweep" if average is None else "adam+ema sweep", average)


def adamw_sweep(reference: dict[str, Any], lr: float, wds: list[float]) -> list[dict[str, Any]]:
    """AdamW at ``lr`` with each decoupled weight decay ``wd`` (torch's AdamW: ``p -= lr * wd * p`` per step)."""
    import torch

    return sweep(reference, {f"adamw@{lr:g},wd{wd:g}": (lambda g, wd=wd: torch.optim.AdamW(g, lr=lr, weight_decay=wd), lr)
                             for wd in wds}, "adamw sweep")


def plot(points: list[dict[str, Any]], bar: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    kinds = {"learned": ("tab:red", "o"), "baseline": ("tab:blue", "s"), "adam sweep": ("tab:purple", "^"),
             "adamw sweep": ("tab:orange", "v"), "adam+ema sweep": ("tab:green", "D")}
    for ax, d in zip(axes, (1, 8)):  # y: SSIM on the 1s, then on the 8s; x: always the 1s' mass ratio
        lo = bar[f"ssim{d}"] - SSIM_SLACK
        ax.axvspan(*MASS_RANGE, color="tab:green", alpha=0.08, zorder=0)
        for kind, (color, marker) in kinds.items():
            sel = [p for p in points if _kind(p) == kind]
            ax.scatter([p["mass1"] for p in sel], [p[f"ssim{d}"] for p in sel], c=color, marker=marker, s=22,
                       label=f"{kind} ({len(sel)})", alpha=0.75)
            for p in sel if kind.endswith("sweep") else []:  # label the sweeps' points: learning rate / decay
                label = p["optimizer"].split(",wd")[1] if ",wd" in p["optimizer"] else f"{p['lr']:g}"
                ax.annotate(label, (p["mass1"], p[f"ssim{d}"]), fontsize=7, xytext=(3, 2), textcoords="offset points")
        ax.axhline(lo, color="0.3", lw=0.8, ls="--", label=f"goal (a): tuned Adam - {SSIM_SLACK}")
        for m in MASS_RANGE:
            ax.axvline(m, color="tab:green", lw=0.8, ls="--")
        ax.set_xlabel("foreground-mass ratio on unseen 1s (goal (b): between the green lines)")
        ax.set_ylabel(f"mean SSIM to the target on unseen {d}s")
        y0, x0 = max(0.0, lo - 0.12), 0.5
        ax.set_ylim(y0, max(p[f"ssim{d}"] for p in points) + 0.02)
        ax.set_xlim(x0, max(p["mass1"] for p in points) + 0.05)
        hidden = sum(p[f"ssim{d}"] < y0 or p["mass1"] < x0 for p in points)
        ax.set_title(f"{d}s' SSIM against the 1s' mass ratio ({hidden} points off the axes)", fontsize=10)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _cell(col: str, v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:g}" if col == "lr" else f"{v:.3f}"
    return str(v)


def _kind(p: dict[str, Any]) -> str:
    from l2l_torch.evaluation import BASELINES

    if p["source"].endswith("sweep"):
        return p["source"]
    return "baseline" if p["optimizer"].split(",")[0].removesuffix("_tuned") in BASELINES else "learned"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", required=True, help="the affnist results.json whose tuned Adam sets goal (a)")
    ap.add_argument("--root", default="results", help="where to look for committed affnist evaluations")
    ap.add_argument("--lrs", default="", help="comma-separated Adam learning rates to sweep (none: no training)")
    ap.add_argument("--adamw-wds", default="", help="comma-separated weight decays of AdamW at the reference's tuned lr")
    ap.add_argument("--ema-lrs", default="", help="comma-separated Adam learning rates to sweep, each evaluated at the "
                    "exponential moving average of its iterates (decay --ema)")
    ap.add_argument("--ema", type=float, default=0.9, help="decay of that average (default 0.9)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    ref = json.loads(Path(a.reference).read_text())
    tuned = points_of({"optimizers": {"adam_tuned": ref["optimizers"]["adam_tuned"]}, "seeds": ref["seeds"]}, "")[0]
    bar = {f"ssim{d}": tuned[f"ssim{d}"] for d in DIGITS}
    points = committed_points(Path(a.root), ref["steps"])
    lrs = [float(x) for x in a.lrs.split(",") if x]
    if lrs:
        points += adam_sweep(ref, lrs)
    wds = [float(x) for x in a.adamw_wds.split(",") if x]
    if wds:
        points += adamw_sweep(ref, ref["optimizers"]["adam_tuned"]["lr"], wds)
    ema_lrs = [float(x) for x in a.ema_lrs.split(",") if x]
    if ema_lrs:
        points += adam_sweep(ref, ema_lrs, a.ema)
    points = [judge(p, bar) for p in points]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"reference": a.reference, "bar_ssim": {k: v - SSIM_SLACK for k, v in bar.items()},
               "mass_range": MASS_RANGE, "points": len(points),
               "meet_ssim": sum(p["ssim_ok"] for p in points), "meet_mass": sum(p["mass_ok"] for p in points),
               "meet_both": sum(p["both"] for p in points),
               "meet_both_pooled": sum(p["both_pooled"] for p in points),
               "learned_meet_both_pooled": sum(p["both_pooled"] and _kind(p) == "learned" for p in points)}
    (out / "frontier.json").write_text(json.dumps({**summary, "rows": points}, indent=1))
    cols = ["optimizer", "lr", "source"] + [f"ssim{d}" for d in DIGITS] + [f"mass{d}" for d in DIGITS] + ["mass_pooled"]
    verdicts = ["(a) SSIM", "(b) mass", "both", "both, (b) pooled"]
    lines = ["| " + " | ".join(cols + verdicts) + " |", "|" + "---|" * (len(cols) + len(verdicts))]
    for p in sorted(points, key=lambda p: -p["ssim1"]):
        cells = [_cell(c, p[c]) for c in cols]
        lines.append("| " + " | ".join(cells + ["yes" if p["ssim_ok"] else "no", "yes" if p["mass_ok"] else "no",
                                                "**yes**" if p["both"] else "no",
                                                "yes" if p["both_pooled"] else "no"]) + " |")
    head = (f"Bar of goal (a): SSIM 8s / 6s / 1s >= {bar['ssim8'] - SSIM_SLACK:.3f} / {bar['ssim6'] - SSIM_SLACK:.3f}"
            f" / {bar['ssim1'] - SSIM_SLACK:.3f} (tuned Adam of {a.reference} minus {SSIM_SLACK}); goal (b): mass ratio "
            f"in [{MASS_RANGE[0]}, {MASS_RANGE[1]}] on each set. {summary['points']} points: {summary['meet_ssim']} "
            f"meet (a), {summary['meet_mass']} meet (b), {summary['meet_both']} meet both. Read with goal (b) on the "
            f"mass ratio's mean over all unseen digits (`mass_pooled`) instead of on each set: "
            f"{summary['meet_both_pooled']} meet both, {summary['learned_meet_both_pooled']} of them learned.\n\n")
    (out / "table.md").write_text(head + "\n".join(lines) + "\n")
    plot(points, bar, out / "frontier.png")
    print(head.strip())
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
