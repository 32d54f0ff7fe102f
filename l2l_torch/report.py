"""The README's tables (results, shipped optimizers, performance), generated from committed files.

    python -m l2l_torch.report            # rewrite the two tables in README.md
    python -m l2l_torch.report --check    # exit 1 if README.md differs from what the files give

Every figure comes from a committed ``results.json`` (``evaluate.py``) or benchmark JSON named in
:data:`HEADLINE` and :data:`PERFORMANCE`; nothing is typed by hand. Verdicts: the paired t-test over the
held-out seeds, Holm-corrected across the rows of the table (:mod:`l2l_torch.stats`).
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

#: the README's results table: (shipped optimizer, task as a reader knows it, evaluation folder)
HEADLINE: list[tuple[str, str, str]] = [
    ("small_fc_warmup_pes", "Fashion-MNIST MLP, sigmoid", "research/experiments/family_rows_seeds10/fmnist_t1_sigmoid_100"),
    ("small_fc_warmup_pes", "Fashion-MNIST MLP, tanh", "research/experiments/family_rows_seeds10/fmnist_t1_tanh_100"),
    ("small_fc_warmup_pes", "Fashion-MNIST MLP, ReLU", "research/experiments/family_rows_seeds10/fmnist_t1_relu_100"),
    ("small_fc_warmup_pes", "Fashion-MNIST MLP, sigmoid", "research/experiments/family_rows_seeds10/fmnist_t1_sigmoid_200"),
    ("small_fc_warmup_pes", "Fashion-MNIST MLP, sigmoid", "research/experiments/family_rows_seeds10/fmnist_t1_sigmoid_2000"),
    ("small_fc_warmup_pes", "CIFAR-10 conv+dense CNN", "research/experiments/family_rows_seeds10/cifar_convdense_300"),
    ("small_fc_warmup_pes", "STN on affNIST-style 8s (1 - SSIM)", "research/experiments/family_rows_seeds10/affnist_200"),
    ("hyper_adam_fmnist_t1", "Fashion-MNIST MLP, sigmoid", "research/experiments/fmnist_t1_hyper_adam/size_mlp_rms09/fmnist_t1_100"),
    ("fmnist_t1 (paper LSTM)", "Fashion-MNIST MLP, sigmoid", "research/experiments/fmnist_t1"),
    ("affnist (paper LSTM)", "STN on affNIST-style 8s (1 - SSIM)", "research/experiments/affnist/meta_lr_0.01"),
]

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


def headline_table(root: Path = REPO) -> str:
    """Markdown: each row of :data:`HEADLINE`, the learned optimizer against lr-tuned Adam on the same seeds."""
    rows, tests = [], []
    for name, task, folder in HEADLINE:
        res = json.loads((root / folder / "results.json").read_text())
        lo, ad = res["optimizers"][_learned(res)], res["optimizers"]["adam_tuned"]
        cmp = paired_comparison(lo["per_seed"]["train_loss"], ad["per_seed"]["train_loss"])
        rows.append((name, task, folder, res, lo, ad, cmp))
        tests.append(cmp["p"])
    lines = ["| optimizer | task | steps | seeds | final train loss: learned | lr-tuned Adam | "
             "difference [95 % CI] | p (Holm) | verdict | test accuracy: learned / Adam |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for (name, task, folder, res, lo, ad, cmp), p_adj in zip(rows, holm(tests)):
        acc = "–"
        if "test_accuracy" in lo:
            acc = f"{100 * lo['test_accuracy']['mean']:.1f} / {100 * ad['test_accuracy']['mean']:.1f} %"
        ci = f"{cmp['mean_diff']:+.3f} [{cmp['ci_low']:+.3f}, {cmp['ci_high']:+.3f}]"
        lines.append(f"| {name} | [{task}]({folder}/) | {res['steps']} | {cmp['n']} | {_mean_std(lo, 'final_loss')} | "
                     f"{_mean_std(ad, 'final_loss')} (lr {ad['lr']:g}) | {ci} | {p_adj:.2g} | "
                     f"**{verdict(cmp['mean_diff'], p_adj)}** | {acc} |")
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
