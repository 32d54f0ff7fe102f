"""Writing evaluation outputs: ``results.json``, a loss-curve PNG, a per-epoch validation PNG (when the
run recorded epochs), an update-size histogram PNG and markdown tables.

The update-size histogram of a committed checkpoint, without a full evaluation::

    python -m l2l_torch.plots updates --task fmnist_t1 --checkpoint research/experiments/fmnist_t1/optimizer.pt --out research/experiments/fmnist_t1

(tuned Adam's learning rate is read from ``--out``'s ``results.json`` when there is one, else ``--adam-lr``).
"""

from __future__ import annotations

import json
import math
import re
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


#: the tuned baselines every row of a results table is compared with, where the evaluation ran them
REFERENCES: tuple[str, ...] = ("adam_tuned", "adamw_tuned")


def markdown_table(results: dict[str, Any]) -> str:
    """One row per optimizer: lr, final training loss, val/test metrics where present, and, against each tuned
    reference on the same seeds (:data:`REFERENCES`: lr-tuned Adam, and ``adamw_tuned`` when it ran), the paired
    difference in final training loss with its 95 % CI, the Holm-corrected p-value (paired t-test, corrected over
    every comparison of the table) and the verdict (:mod:`l2l_torch.stats`)."""
    from l2l_torch.stats import holm, paired_comparison, verdict

    opts = results["optimizers"]
    metrics = [m for m in ("val_loss", "test_loss", "test_accuracy", "test_ssim") if any(m in o for o in opts.values())]
    refs = [r for r in REFERENCES if opts.get(r, {}).get("per_seed", {}).get("train_loss")]
    tests = {(n, r): paired_comparison(o["per_seed"]["train_loss"], opts[r]["per_seed"]["train_loss"])
             for r in refs for n, o in opts.items()
             if n != r and len(o.get("per_seed", {}).get("train_loss", [])) == len(opts[r]["per_seed"]["train_loss"])}
    p_adj = dict(zip(tests, holm([t["p"] for t in tests.values()])))
    head = ["optimizer", "lr", "final train loss", *[m.replace("_", " ") for m in metrics], "diverged"]
    for r in refs:
        label = "tuned Adam" if r == "adam_tuned" else r
        head += [f"vs {label} [95 % CI]", "p (Holm)", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, o in opts.items():
        lr = "learned" if o.get("lr") is None else f"{o['lr']:g}"
        cells = [name, lr, _fmt(o.get("final_loss"))]
        cells += [_fmt(o.get(m), pct=m.endswith("accuracy")) for m in metrics]
        cells.append(str(o.get("diverged", 0)))
        for r in refs:
            t = tests.get((name, r))
            cells += (["–", "–", "–"] if t is None or math.isnan(t["p"]) else
                      [f"{t['mean_diff']:+.3g} [{t['ci_low']:+.3g}, {t['ci_high']:+.3g}]", f"{p_adj[(name, r)]:.2g}",
                       verdict(t["mean_diff"], p_adj[(name, r)])])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(results: dict[str, Any], path: Path, title: str | None = None) -> None:
    """Mean training-loss curve per optimizer with a 25-75th percentile band over seeds (a ±1 std band
    for older results without percentiles), log scale when all positive."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    all_pos = True
    for name, o in results["optimizers"].items():
        mean = [math.nan if v is None else v for v in o["curve"]]
        xs = curve_steps(o)
        if "curve_q25" in o:
            lo = [math.nan if v is None else v for v in o["curve_q25"]]
            hi = [math.nan if v is None else v for v in o["curve_q75"]]
        else:
            std = [0.0 if v is None else v for v in o.get("curve_std", [0.0] * len(mean))]
            lo = [m - s for m, s in zip(mean, std)]
            hi = [m + s for m, s in zip(mean, std)]
        ax.plot(xs, mean, label=name, **_style(name, o))
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


def epoch_metric(results: dict[str, Any]) -> str | None:
    """The per-epoch metric to show: ``val_accuracy`` where recorded, else ``val_loss``; None without epochs."""
    eps = [o["epochs"] for o in results["optimizers"].values() if o.get("epochs")]
    if not eps:
        return None
    return "val_accuracy" if "val_accuracy" in eps[0][0] else "val_loss"


def epoch_table(results: dict[str, Any]) -> str | None:
    """Markdown: one row per optimizer, one column per epoch, the per-epoch validation metric
    (mean ± std over seeds). None when the run recorded no epochs."""
    key = epoch_metric(results)
    if key is None:
        return None
    opts = {n: o for n, o in results["optimizers"].items() if o.get("epochs")}
    n_ep = max(len(o["epochs"]) for o in opts.values())
    pct = key.endswith("accuracy")
    steps = next(o["epochs"] for o in opts.values() if len(o["epochs"]) == n_ep)
    head = ["optimizer", *[f"epoch {e + 1} (step {steps[e]['step']:g})" for e in range(n_ep)]]
    lines = [f"Per-epoch {key.replace('_', ' ')}{' (%)' if pct else ''}, mean ± std over seeds:", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, o in opts.items():
        stds = o.get("epochs_std") or [{}] * len(o["epochs"])
        cells = [_fmt({"mean": ep[key], "std": sd.get(key, 0.0)}, pct=pct) for ep, sd in zip(o["epochs"], stds, strict=False)]
        lines.append("| " + " | ".join([name, *cells, *["–"] * (n_ep - len(cells))]) + " |")
    return "\n".join(lines) + "\n"


def _style(name: str, o: dict[str, Any]) -> dict[str, Any]:
    return {"lw": 2.2, "color": "black"} if o.get("lr") is None else {"lw": 1.2, "ls": "--" if "_tuned" not in name else "-"}


def plot_epochs(results: dict[str, Any], path: Path, title: str | None = None) -> bool:
    """Per-epoch validation accuracy (else loss) per optimizer: mean with a ±1 std band over seeds;
    the learned optimizer against the baselines at default learning rates (left) and at tuned ones
    (right). Returns False (and writes nothing) when the run recorded no epochs."""
    key = epoch_metric(results)
    if key is None:
        return False
    scale = 100.0 if key.endswith("accuracy") else 1.0
    opts = {n: o for n, o in results["optimizers"].items() if o.get("epochs")}
    panels = [("default learning rates", {n: o for n, o in opts.items() if "_tuned" not in n}),
              ("tuned learning rates", {n: o for n, o in opts.items() if o.get("lr") is None or "_tuned" in n})]
    panels = [(t, ps) for t, ps in panels if any(o.get("lr") is not None for o in ps.values())] or [("", opts)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    label = "validation accuracy (%)" if scale == 100.0 else "validation loss"
    for ax, (sub, ps) in zip(axes[0], panels, strict=False):
        for i, (name, o) in enumerate(ps.items()):
            xs = list(range(1, len(o["epochs"]) + 1))
            mean = [scale * (math.nan if e.get(key) is None else e[key]) for e in o["epochs"]]
            std = [scale * (s.get(key) or 0.0) for s in (o.get("epochs_std") or [{}] * len(xs))]
            style = _style(name, o) | ({} if o.get("lr") is None else {"color": f"C{i}", "ls": "-"})
            ax.plot(xs, mean, marker="o", ms=3, label=name, **style)
            ax.fill_between(xs, [m - s for m, s in zip(mean, std, strict=True)], [m + s for m, s in zip(mean, std, strict=True)],
                            alpha=0.12, color=ax.lines[-1].get_color())
        ax.set_xticks(range(1, max(len(o["epochs"]) for o in ps.values()) + 1))
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{label} (mean; band: ±1 std)")
        ax.set_title(sub, fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title or f"{results['task']}: per-epoch {label}, {results['seeds']} seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def save_png(image: Any, path: Path) -> None:
    """Write ``image``, a ``(3, H, W)`` or ``(1, H, W)`` tensor in [0, 1], as a PNG: the 8-bit pixels of
    ``torchvision.utils.save_image``, stored with an indexed palette when there are at most 256 colours (an image grid
    of digits has a few dozen: the same pixels in about 40 % of the bytes)."""
    import numpy as np
    import torch
    from PIL import Image

    pixels = image.detach().mul(255).add(0.5).clamp(0, 255).expand(3, -1, -1).permute(1, 2, 0)
    rgb = pixels.to("cpu", torch.uint8).numpy()
    colours, index = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)
    if len(colours) > 256:
        Image.fromarray(rgb).save(path, optimize=True)
        return
    out = Image.fromarray(index.reshape(rgb.shape[:2]).astype(np.uint8))  # (mode L; the palette makes it P)
    out.putpalette(colours.astype(np.uint8).tobytes())
    out.save(path, optimize=True)


def histogram_edges(hist: dict[str, Any]) -> list[float]:
    """The ``len(counts) + 1`` bin edges (in ``log10 |update|``) of a histogram of
    :meth:`l2l_torch.training.UpdateRecorder.to_dict` or of an ``updates.json`` entry (files written before
    2026-12-07 list their ``edges`` themselves)."""
    if "edges" in hist:
        return hist["edges"]
    (lo, hi), bins = hist["log10_range"], len(hist["counts"])
    return [round(lo + i * (hi - lo) / bins, 6) for i in range(bins + 1)]


def update_summary(updates: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per optimizer, from its histogram: the median and the 10th/90th percentiles of ``|update|``
    over all coordinates and steps (interpolated in log10 inside a bin, zeros included), and the
    fraction of exact zeros."""
    out = {}
    for name, u in updates["optimizers"].items():
        counts, edges, zeros = u["counts"], histogram_edges(u), u.get("zeros", 0)
        total = sum(counts) + zeros
        if not total:
            continue
        stats = {"zero_fraction": zeros / total}
        for q in (10, 50, 90):
            target, acc = q / 100 * total, zeros
            val = 0.0
            if acc < target:
                for i, c in enumerate(counts):
                    if c and acc + c >= target:  # interpolate linearly in log10 inside the bin
                        val = 10 ** (edges[i] + (target - acc) / c * (edges[i + 1] - edges[i]))
                        break
                    acc += c
            stats[f"p{q}"] = val
        out[name] = stats
    return out


def plot_updates(updates: dict[str, Any], path: Path, title: str | None = None) -> None:
    """Left: overlaid histograms of ``log10|update|`` over all coordinates and steps, one per optimizer
    (fraction of all updates per bin, log y). Right: mean and median ``|update|`` per step."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    summary = update_summary(updates)
    lo, hi = math.inf, -math.inf
    for name, u in updates["optimizers"].items():
        lr = "learned" if u.get("lr") is None else f"lr {u['lr']:g}"
        total = max(sum(u["counts"]) + u.get("zeros", 0), 1)
        edges = histogram_edges(u)
        color = "black" if u.get("lr") is None else None
        zero = f", {100 * u.get('zeros', 0) / total:.2g}% exactly 0" if u.get("zeros") else ""
        ax.stairs([c / total for c in u["counts"]], edges, fill=True, alpha=0.35, color=color,
                  label=f"{name} ({lr}{zero})")
        c = ax.patches[-1].get_facecolor()
        ax.stairs([c_ / total for c_ in u["counts"]], edges, color=c[:3], lw=1.2)
        med = summary.get(name, {}).get("p50")
        if med:
            ax.axvline(math.log10(med), color=c[:3], ls=":", lw=1.2)
        used = [i for i, c_ in enumerate(u["counts"]) if c_]
        if used:
            lo, hi = min(lo, edges[used[0]]), max(hi, edges[used[-1] + 1])
        xs = range(1, len(u["mean_abs"]) + 1)
        bx.plot(xs, u["mean_abs"], color=c[:3], lw=1.4, label=f"{name}: mean")
        bx.plot(xs, u["median_abs"], color=c[:3], lw=1.0, ls="--", label=f"{name}: median")
    ax.set_yscale("log")
    if math.isfinite(lo):
        ax.set_xlim(lo - 0.25, hi + 0.25)
    ax.set_xlabel("log10 |update| (per coordinate, all steps; dotted: median)")
    ax.set_ylabel("fraction of updates")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    bx.set_yscale("log")
    bx.set_xscale("log")
    bx.set_xlabel("optimizee step")
    bx.set_ylabel("|update| per step")
    bx.legend(fontsize=8)
    bx.grid(alpha=0.3)
    fig.suptitle(title or f"update sizes: one held-out instance (seed {updates.get('seed')}), "
                 f"{updates.get('steps')} steps{', ' + updates['task'] if 'task' in updates else ''}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def updates_json(updates: dict[str, Any]) -> str:
    """The text of ``updates.json``: one line, each histogram by its ``log10_range`` (an entry that lists its
    ``edges``, as files written before 2026-12-07 do, is given its range instead when that range makes the same
    edges)."""
    out = dict(updates, optimizers={})
    for name, u in updates["optimizers"].items():
        if "edges" in u:
            compact = {("log10_range" if k == "edges" else k): ([v[0], v[-1]] if k == "edges" else v)
                       for k, v in u.items()}
            u = compact if histogram_edges(compact) == u["edges"] else u
        out["optimizers"][name] = u
    return json.dumps(json_safe(out), separators=(",", ":"), allow_nan=False)


def write_updates(updates: dict[str, Any], out: Path) -> None:
    """``updates.json`` and ``updates.png`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "updates.json").write_text(updates_json(updates))
    plot_updates(updates, out / "updates.png")


def json_safe(obj: Any) -> Any:
    """Replace non-finite floats by None (JSON has no NaN/Inf) recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


#: significant digits kept in per-step curves (``curve``, ``curve_std``, ...): plots need no more, and the
#: per-seed finals that the statistics use are stored exactly
CURVE_DIGITS = 4
#: per-step curves of at least twice this many steps keep every k-th step (``curve_every``: k), about this many points
CURVE_POINTS = 200


def thin_curves(summary: dict[str, Any]) -> dict[str, Any]:
    """One optimizer's summary with its per-step curves (every ``curve*`` list) thinned to every k-th step,
    k = ``len // CURVE_POINTS``, and ``curve_every: k`` added; curves of fewer than ``2 * CURVE_POINTS`` steps, and
    curves already thinned, are returned as they are. The per-seed finals are untouched."""
    curve = summary.get("curve")
    every = max(1, len(curve) // CURVE_POINTS) if isinstance(curve, list) else 1
    if every == 1 or "curve_every" in summary:
        return summary
    return {**{k: (v[::every] if k.startswith("curve") and isinstance(v, list) else v) for k, v in summary.items()},
            "curve_every": every}


def curve_steps(summary: dict[str, Any]) -> range:
    """The optimizee steps of ``summary["curve"]``'s points (``curve_every`` apart when it was thinned)."""
    every = int(summary.get("curve_every", 1))
    return range(0, every * len(summary["curve"]), every)


_JSON_STRING = re.compile(r'("(?:[^"\\]|\\.)*")')
_NUMBER_LIST = re.compile(r"\[\s*((?:-?[\d.eE+-]+|null)(?:,\s*(?:-?[\d.eE+-]+|null))*)\s*\]")


def round_curves(obj: Any) -> Any:
    """``obj`` with every ``curve*`` list of floats (at any depth) to :data:`CURVE_DIGITS` significant digits."""
    if isinstance(obj, dict):
        return {k: ([v if v is None else float(f"{v:.{CURVE_DIGITS}g}") for v in val]
                    if k.startswith("curve") and isinstance(val, list) and all(
                        v is None or isinstance(v, float) for v in val) else round_curves(val))
                for k, val in obj.items()}
    if isinstance(obj, list):
        return [round_curves(v) for v in obj]
    return obj


def results_json(results: dict[str, Any]) -> str:
    """``results.json`` text: non-finite floats as null, curves thinned (:func:`thin_curves`) and to
    :data:`CURVE_DIGITS` significant digits, one key per line, and each list of numbers on one line, with no space
    after a colon or a comma (the files stay small enough to commit)."""
    if isinstance(results.get("optimizers"), dict):
        results = {**results, "optimizers": {k: thin_curves(o) for k, o in results["optimizers"].items()}}
    text = json.dumps(round_curves(json_safe(results)), indent=1, separators=(",", ":"), allow_nan=False, default=str)
    parts = _JSON_STRING.split(text)  # even indices: between strings, odd: the strings, left as they are
    parts[::2] = [_NUMBER_LIST.sub(lambda m: "[" + ",".join(x.strip() for x in m.group(1).split(",")) + "]", p)
                  for p in parts[::2]]
    return "".join(parts)


def write_outputs(results: dict[str, Any], out: Path) -> None:
    """``results.json``, ``curves.png``, ``table.md`` and, when the run recorded epochs, ``epochs.png``
    (and the per-epoch table in ``table.md``) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(results_json(results))
    plot_curves(results, out / "curves.png")
    plot_epochs(results, out / "epochs.png")
    ep = epoch_table(results)
    (out / "table.md").write_text(markdown_table(results) + ("" if ep is None else "\n" + ep))


def read_scalars(logdir: Path, tags: list[str]) -> dict[str, list[list[float]]]:
    """Scalars logged to TensorBoard under ``logdir`` (all event files below it), as ``{tag: [[step, value]]}``
    sorted by step; tags that were never logged are left out."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[list[float]]] = {}
    for events in sorted(Path(logdir).rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in tags:
            if tag in acc.Tags().get("scalars", []):
                out.setdefault(tag, []).extend([float(e.step), float(e.value)] for e in acc.Scalars(tag))
    return {k: sorted(v) for k, v in out.items()}


def plot_scalars(scalars: dict[str, list[list[float]]], path: Path, title: str | None = None) -> None:
    """One panel per tag (log scale where all values are positive), against the meta-step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(scalars), 1, figsize=(7, 2.6 * len(scalars)), squeeze=False)
    for ax, (tag, pts) in zip(axes[:, 0], scalars.items()):
        ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1)
        if all(p[1] > 0 for p in pts):
            ax.set_yscale("log")
        ax.set_ylabel(tag, fontsize=8)
    axes[-1, 0].set_xlabel("meta-step")
    if title:
        axes[0, 0].set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    """``python -m l2l_torch.plots updates|scalars ...``: the update-size histogram of a checkpoint, or
    scalars of a meta-training run's TensorBoard log as JSON and PNG (see the module doc)."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m l2l_torch.plots", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("updates", help="update-size histogram of a learned optimizer against Adam")
    u.add_argument("--task", required=True)
    u.add_argument("--checkpoint", required=True, help="learned-optimizer file (optimizer.pt)")
    u.add_argument("--out", required=True, help="output folder (updates.json, updates.png)")
    u.add_argument("--steps", type=int, help="optimizee steps (default: results.json in --out, else the config's horizon)")
    u.add_argument("--adam-lr", type=float, help="Adam's learning rate (default: adam_tuned's in --out/results.json)")
    u.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="task override, as in evaluate.py")
    sc = sub.add_parser("scalars", help="scalars of a meta-training run's TensorBoard log, as JSON and a plot")
    sc.add_argument("logdir", help="a run's TensorBoard folder (e.g. runs/TASK/tb)")
    sc.add_argument("--tags", default="meta_train/loss,meta_train/grad_norm,val/loss",
                    help="comma-separated scalar tags (default: %(default)s)")
    sc.add_argument("--out", required=True, help="output path without suffix (writes OUT.json and OUT.png)")
    a = p.parse_args(argv)
    if a.cmd == "scalars":
        scalars = read_scalars(Path(a.logdir), [t for t in a.tags.split(",") if t])
        if not scalars:
            sys.exit(f"error: none of the tags {a.tags} in a TensorBoard log under {a.logdir}")
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(
            {"logdir": str(a.logdir), "scalars": scalars,
             "command": "python -m l2l_torch.plots " + " ".join(sys.argv[1:] if argv is None else argv)}, indent=1))
        plot_scalars(scalars, out.with_suffix(".png"), title=str(a.logdir))
        print(f"wrote {out.with_suffix('.json')}, {out.with_suffix('.png')}: "
              + ", ".join(f"{k} ({len(v)} points)" for k, v in scalars.items()))
        return

    from l2l_torch.cli import (
        UserError,
        config_horizon,
        fail,
        load_for_task,
        parse_overrides,
        task_family_from_config,
    )
    from l2l_torch.evaluation import updates_against_adam

    out = Path(a.out)
    prev = json.loads((out / "results.json").read_text()) if (out / "results.json").is_file() else {}
    try:
        overrides = parse_overrides(a.set, prev.get("overrides"))
        family = task_family_from_config(a.task, overrides)
    except UserError as e:
        fail(str(e))
    lopt, meta, device = load_for_task(a.checkpoint, a.task, family)
    steps = a.steps or prev.get("steps") or config_horizon(a.task)
    upd = updates_against_adam(family, lopt, steps, prev.get("optimizers"), a.adam_lr)
    upd.update(task=a.task, checkpoint=str(a.checkpoint),
               command="python -m l2l_torch.plots " + " ".join(sys.argv[1:] if argv is None else argv))
    write_updates(upd, out)
    print(f"wrote {out / 'updates.json'}, {out / 'updates.png'}")
    for name, st in update_summary(upd).items():
        print(f"{name}: median |update| {st['p50']:.3g} (10-90%: {st['p10']:.3g}-{st['p90']:.3g}), "
              f"{100 * st['zero_fraction']:.1f}% zeros")


if __name__ == "__main__":
    main()
