"""Writing evaluation outputs: ``results.json``, a loss-curve PNG and a markdown table."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _fmt(stat: dict[str, float] | None, pct: bool = False) -> str:
    if not stat or stat.get("mean") is None or not math.isfinite(stat["mean"]):
        return "diverged"
    if pct:
        return f"{100 * stat['mean']:.1f} ± {100 * stat['std']:.1f}"
    return f"{stat['mean']:.4g} ± {stat['std']:.2g}"


def markdown_table(results: dict[str, Any]) -> str:
    """One row per optimizer: lr, final training loss, and val/test metrics where present."""
    opts = results["optimizers"]
    metrics = [m for m in ("val_loss", "test_loss", "test_accuracy", "test_ssim") if any(m in o for o in opts.values())]
    head = ["optimizer", "lr", "final train loss", *[m.replace("_", " ") for m in metrics], "diverged"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, o in opts.items():
        lr = "learned" if o.get("lr") is None else f"{o['lr']:g}"
        cells = [name, lr, _fmt(o.get("final_loss"))]
        cells += [_fmt(o.get(m), pct=m.endswith("accuracy")) for m in metrics]
        cells.append(str(o.get("diverged", 0)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(results: dict[str, Any], path: Path, title: str | None = None) -> None:
    """Mean training-loss curve per optimizer with a 25-75th percentile band over seeds (a ±1 std band
    for older results without percentiles), log scale when all positive."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    all_pos = True
    for name, o in results["optimizers"].items():
        mean = [math.nan if v is None else v for v in o["curve"]]
        xs = range(len(mean))
        if "curve_q25" in o:
            lo = [math.nan if v is None else v for v in o["curve_q25"]]
            hi = [math.nan if v is None else v for v in o["curve_q75"]]
        else:
            std = [0.0 if v is None else v for v in o.get("curve_std", [0.0] * len(mean))]
            lo = [m - s for m, s in zip(mean, std)]
            hi = [m + s for m, s in zip(mean, std)]
        style = {"lw": 2.2, "color": "black"} if o.get("lr") is None else {"lw": 1.2, "ls": "--" if "_tuned" not in name else "-"}
        ax.plot(xs, mean, label=name, **style)
        all_pos &= all(v > 0 for v in mean if math.isfinite(v))
        ax.fill_between(xs, [max(v, 1e-12) for v in lo], hi, alpha=0.12, color=ax.lines[-1].get_color())
    if all_pos:
        ax.set_yscale("log")
    ax.set_xlabel("optimizee step")
    ax.set_ylabel("training loss (mean; band: 25-75th pct)")
    ax.set_title(title or f"{results['task']}: {results['seeds']} seeds")
    ax.legend(fontsize=8, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def json_safe(obj: Any) -> Any:
    """Replace non-finite floats by None (JSON has no NaN/Inf) recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_outputs(results: dict[str, Any], out: Path) -> None:
    """``results.json``, ``curves.png`` and ``table.md`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(json_safe(results), indent=1, allow_nan=False, default=str))
    plot_curves(results, out / "curves.png")
    (out / "table.md").write_text(markdown_table(results))
