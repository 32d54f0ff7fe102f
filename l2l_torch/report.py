"""The README's tables (results, shipped optimizers, performance), generated from committed files.

    python -m l2l_torch.report            # rewrite the three tables in README.md
    python -m l2l_torch.report --check    # exit 1 if README.md differs from what the files give

Every figure comes from a committed ``results.json`` (``evaluate.py``) or benchmark JSON named in
:data:`HEADLINE` and :data:`PERFORMANCE`; nothing is typed by hand. Verdicts: the paired t-test over the
held-out seeds, Holm-corrected across every comparison of the table (:mod:`l2l_torch.stats`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from l2l_torch.stats import holm, paired_comparison, verdict

REPO = Path(__file__).resolve().parent.parent
RESULTS = ("<!-- results:start -->", "<!-- results:end -->")
PERF = ("<!-- perf:start -->", "<!-- perf:end -->")
PRETRAINED = ("<!-- pretrained:start -->", "<!-- pretrained:end -->")

#: the README's results table, one row per (shipped optimizer, task as a reader knows it, evaluation folder): the
#: fresh held-out instances of research/seed_ledger.json, evaluated once with the methods frozen
FRESH = "research/experiments/headline_fresh"
HEADLINE: list[tuple[str, str, str]] = [
    ("small_fc_warmup_pes", "Fashion-MNIST MLP 784-20-10", f"{FRESH}/fmnist_t1/small_fc_warmup_pes"),
    ("hyper_adam_fmnist_t1", "Fashion-MNIST MLP 784-20-10", f"{FRESH}/fmnist_t1/hyper_adam_fmnist_t1"),
    ("fmnist_t1 (paper LSTM)", "Fashion-MNIST MLP 784-20-10",
     "research/experiments/fmnist_t1_time_budget/min120/fresh_instances"),
    ("small_fc_warmup_pes", "Fashion-MNIST MLP 784-20-20-10", f"{FRESH}/fmnist_t3/small_fc_warmup_pes"),
    ("fmnist_t3 (paper LSTM)", "Fashion-MNIST MLP 784-20-20-10", f"{FRESH}/fmnist_t3/fmnist_t3"),
    ("small_fc_warmup_pes", "CIFAR-10 conv+dense CNN", f"{FRESH}/cifar_convdense/small_fc_warmup_pes"),
    ("lstm_fmnist_family (LSTM)", "CIFAR-10 conv+dense CNN", f"{FRESH}/cifar_convdense/lstm_fmnist_family"),
    ("small_fc_warmup_pes", "CIFAR-10 conv-only CNN", f"{FRESH}/cifar_conv/small_fc_warmup_pes"),
    ("lstm_fmnist_family (LSTM)", "CIFAR-10 conv-only CNN", f"{FRESH}/cifar_conv/lstm_fmnist_family"),
    ("small_fc_warmup_pes", "STN, affNIST-style 8s (1 − SSIM)", f"{FRESH}/affnist/small_fc_warmup_pes"),
    ("affnist (RNNprop LSTM)", "STN, affNIST-style 8s (1 − SSIM)", "research/experiments/affnist_shipped_fresh_instances"),
    ("affnist_paper_lstm (paper LSTM)", "STN, affNIST-style 8s (1 − SSIM)", f"{FRESH}/affnist/affnist_paper_lstm"),
]

#: the tuned references of the results table, in its column order
REFERENCES = ("adam_tuned", "adamw_tuned")

#: the README's performance table: (what, benchmark JSON, how to read the figure from it)
PERFORMANCE: list[tuple[str, str, str]] = [
    ("meta-training, fused LSTM path vs plain `nn.LSTMCell` (CPU, 1 thread, MLP)",
     "benchmarks/results/meta_throughput_idle_stack.json", "speedup_vs_reference"),
    ("deployment step vs Adam (CPU, 1 thread, CIFAR-10 conv+dense CNN)", "benchmarks/results/deployment.json", "ratio"),
    ("meta-training memory per unrolled optimizee step (MLP, 15,910 params)", "benchmarks/results/memory.json", "memory"),
    ("meta-training, fused LSTM path vs plain `nn.LSTMCell` (one H200 GPU)",
     "research/experiments/cuda_check/meta_throughput.json", "speedup_vs_reference"),
    ("deployment step vs Adam (one H200 GPU, conv+dense CNN)", "research/experiments/cuda_check/deployment.json", "ratio"),
]


def _learned(res: dict[str, Any]) -> str:
    return next(k for k, v in res["optimizers"].items() if v.get("lr") is None)


def _mean_std(o: dict[str, Any], key: str, scale: float = 1.0, digits: int = 3) -> str:
    s = o.get(key) or {}
    if s.get("mean") is None or not math.isfinite(s["mean"]):
        return "–"
    return f"{scale * s['mean']:.{digits}g} ± {scale * s['std']:.1g}"


def _steps(n: int | None) -> str:
    """An optimizee-step count in few characters: 950, 3.0k, 22k."""
    if n is None:
        return "?"
    if n < 1000:
        return str(n)
    return f"{n / 1000:.1f}k" if n < 10_000 else f"{n / 1000:.0f}k"


def _held_out_metric(res: dict[str, Any], names: list[str]) -> str:
    """The held-out figure a reader checks besides the loss, for each optimizer in ``names``: test accuracy, or for
    the STN the SSIM on unseen 8s, 6s and 1s."""
    opts = [res["optimizers"][n] for n in names]
    if all("test_accuracy" in o for o in opts):
        return "test acc " + " / ".join(f"{100 * o['test_accuracy']['mean']:.1f}" for o in opts) + " %"
    sets = [k.removesuffix("_ssim") for k in ("test8_ssim", "test6_ssim", "test1_ssim") if k in opts[0]]
    if not sets:
        return "–"
    return "; ".join(f"{k.removeprefix('test')}s " + " / ".join(f"{o[k + '_ssim']['mean']:.3f}" for o in opts)
                     for k in sets)


def headline_table(root: Path = REPO) -> str:
    """Markdown: each row of :data:`HEADLINE`, the learned optimizer against each of :data:`REFERENCES` on the
    same seeds (paired t-tests, Holm over every comparison in the table), with what each side spent."""
    rows, tests = [], []
    for name, task, folder in HEADLINE:
        res = json.loads((root / folder / "results.json").read_text())
        learned = _learned(res)
        lo = res["optimizers"][learned]
        cmps = [paired_comparison(lo["per_seed"]["train_loss"], res["optimizers"][r]["per_seed"]["train_loss"])
                for r in REFERENCES]
        rows.append((name, task, folder, res, learned, cmps))
        tests += [c["p"] for c in cmps]
    adjusted = iter(holm(tests))
    lines = ["| optimizer | task | seeds | final train loss: learned | lr-tuned Adam | adamw_tuned | vs lr-tuned Adam "
             "| vs adamw_tuned | held-out metric: learned / Adam / AdamW | optimizee steps: meta-training / Adam "
             "grid / AdamW search |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, task, folder, res, learned, cmps in rows:
        opts = res["optimizers"]
        verdicts = []
        for c in cmps:
            p = next(adjusted)
            verdicts.append(f"{c['mean_diff']:+.3f}, p {p:.2g}: **{verdict(c['mean_diff'], p)}**")
        meta = opts[learned].get("meta_training_cost") or {}
        spent = (f"{_steps(meta.get('optimizee_steps'))}{'+' if meta.get('warm_started_from') else ''} / "
                 + " / ".join(_steps(opts[r]["tuning_cost"]["optimizee_steps"]) for r in REFERENCES))
        lines.append(f"| {name} | [{task}]({folder}/) ({res['steps']} steps) | {cmps[0]['n']} | "
                     f"{_mean_std(opts[learned], 'final_loss')} | {_mean_std(opts['adam_tuned'], 'final_loss')} | "
                     f"{_mean_std(opts['adamw_tuned'], 'final_loss')} | {verdicts[0]} | {verdicts[1]} | "
                     f"{_held_out_metric(res, [learned, *REFERENCES])} | {spent} |")
    return "\n".join(lines) + "\n"


def pretrained_table() -> str:
    """Markdown: the shipped optimizers (``l2l_torch/pretrained/*.json``, described by
    :func:`l2l_torch.pretrained.describe_entry`), recommended first, each linked to its evaluation."""
    from l2l_torch.pretrained import describe_entry, list_pretrained

    entries = sorted(list_pretrained().items(), key=lambda kv: (kv[1].get("recommended") is not True, kv[0]))
    lines = ["| name | architecture | meta-trained on (last stage) | use for | measured: learned vs best baseline |",
             "|---|---|---|---|---|"]
    for name, meta in entries:
        row = describe_entry(name, meta)
        shown = f"**{name}**" if row["recommended"] else name
        src = meta.get("evaluation") or meta.get("source")
        lines.append(f"| {shown} | {row['arch']} | {row['trained_on']} | {row['use_for']} | [{row['measured']}]({src}/) |")
    return "\n".join(lines) + "\n"


def _perf_figure(data: dict[str, Any], how: str) -> str:
    if how == "memory":
        return f"{data['fits']['saved_bytes']['bytes_per_unrolled_step'] / 2**20:.1f} MiB"
    if how == "ratio":
        return f"{data['rows'][0]['ratio']:.2f}×"
    return f"{data[how]:.2f}×"


def performance_table(root: Path = REPO) -> str:
    """Markdown: one line per entry of :data:`PERFORMANCE`, with the file it comes from."""
    lines = ["| measure | figure | source |", "|---|---|---|"]
    for what, path, how in PERFORMANCE:
        data = json.loads((root / path).read_text())
        lines.append(f"| {what} | {_perf_figure(data, how)} | [{Path(path).name}]({path}) |")
    return "\n".join(lines) + "\n"


def replace_block(text: str, markers: tuple[str, str], block: str) -> str:
    """``text`` with what lies between the two markers replaced by ``block``.

    Raises:
        ValueError: a marker is missing.
    """
    start, end = markers
    if start not in text or end not in text:
        raise ValueError(f"README has no {start} ... {end} block")
    pre, rest = text.split(start, 1)
    return f"{pre}{start}\n{block}{end}{rest.split(end, 1)[1]}"


def render_readme(text: str, root: Path = REPO) -> str:
    """The README ``text`` with both tables regenerated from the files under ``root``."""
    text = replace_block(text, RESULTS, headline_table(root))
    text = replace_block(text, PRETRAINED, pretrained_table())
    return replace_block(text, PERF, performance_table(root))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--readme", type=Path, default=REPO / "README.md")
    p.add_argument("--check", action="store_true", help="do not write; exit 1 if the README is not up to date")
    a = p.parse_args(argv)
    old = a.readme.read_text()
    new = render_readme(old)
    if a.check:
        if new != old:
            print(f"{a.readme} is not up to date: run python -m l2l_torch.report", file=sys.stderr)
            raise SystemExit(1)
        print(f"{a.readme}: tables up to date")
        return
    a.readme.write_text(new)
    print(f"{a.readme}: tables regenerated")


if __name__ == "__main__":
    main()
