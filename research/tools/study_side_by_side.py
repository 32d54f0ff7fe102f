"""The study's Tables 1-3 beside ours: its test accuracies (TF2 Keras optimizers at their defaults), ours with the
same optimizers and defaults (``evaluate.py --baselines study_defaults``) and ours with tuned learning rates.

    python -m research.tools.study_side_by_side > research/experiments/study_defaults/side_by_side.md

Rows whose difference from the study's figure exceeds 3 points are marked; the reasons are discussed in
``research/experiments/study_defaults/COMMAND.md``.
"""

from __future__ import annotations

import json
from pathlib import Path

from research.tools.research_report import STUDY_REFERENCE

ROOT = Path(__file__).resolve().parents[2] / "research" / "experiments"
#: (study table, task, our study-defaults evaluation, our evaluation with tuned learning rates)
ROWS = [
    ("Table 1 (100 steps, batch 512)", "fmnist_t1", "study_defaults/fmnist_t1", "fmnist_t1"),
    ("Table 2 (5 epochs of 422 steps, batch 128)", "fmnist_t2", "study_defaults/fmnist_t2", "fmnist_t2"),
    ("Table 3 (100 steps, batch 512)", "fmnist_t3", "study_defaults/fmnist_t3", "fmnist_t3"),
    ("Table 3 (1 epoch: 422 steps, batch 128)", "fmnist_t3", "study_defaults/fmnist_t3_1epoch", None),
]
#: the study's CIFAR-10 experiments report curves, not tables: (experiment, our study-defaults evaluation, what the
#: study states about the order of the optimizers' validation losses)
CIFAR_ROWS = [
    ("Experiment 4.1: conv-only CNN, 450 steps, batch 200", "study_defaults/cifar_conv",
     "Adam best; the LSTM close to RMSprop, better than SGD and Adagrad"),
    ("Experiment 4.2: conv+dense CNN, 300 steps, batch 200", "study_defaults/cifar_convdense",
     "Adam best; the LSTM struggles"),
]
KERAS = {"lstm": None, "adam": "keras_adam", "rmsprop": "keras_rmsprop", "sgd": "keras_sgd", "adagrad": "keras_adagrad"}


def _acc(res: dict | None, name: str | None) -> float | None:
    if res is None or name is None:
        return None
    o = res["optimizers"].get(name) or {}
    s = o.get("test_accuracy") or {}
    return None if s.get("mean") is None else 100 * s["mean"]


def _learned(res: dict) -> str:
    return next(k for k, v in res["optimizers"].items() if v.get("lr") is None)


def table() -> str:
    lines = ["| study table | optimizer | study | ours, study's defaults | ours, tuned lr | ours − study (defaults) |",
             "|---|---|---|---|---|---|"]
    for label, task, defaults, tuned in ROWS:
        d = json.loads((ROOT / defaults / "results.json").read_text())
        t = json.loads((ROOT / tuned / "results.json").read_text()) if tuned else None
        for opt, study in STUDY_REFERENCE[task].items():
            ours = _acc(d, _learned(d) if opt == "lstm" else KERAS[opt])
            tuned_acc = _acc(t, (_learned(t) if opt == "lstm" else f"{opt}_tuned") if t else None)
            diff = ours - study
            flag = " (> 3 points)" if abs(diff) > 3 else ""
            lines.append(f"| {label} | {opt} | {study:g} | {ours:.1f} | "
                         f"{'–' if tuned_acc is None else f'{tuned_acc:.1f}'} | {diff:+.1f}{flag} |")
    return "\n".join(lines) + "\n"


def cifar_table() -> str:
    """Our validation loss and test accuracy of each optimizer at the study's defaults, in order of validation loss,
    beside what the study says of that order."""
    lines = ["| study experiment | the study says | ours, by validation loss (val loss / test accuracy) |",
             "|---|---|---|"]
    for label, defaults, says in CIFAR_ROWS:
        path = ROOT / defaults / "results.json"
        if not path.is_file():
            lines.append(f"| {label} | {says} | not run |")
            continue
        opts = json.loads(path.read_text())["optimizers"]
        named = {("lstm" if o.get("lr") is None else next(k for k, v in KERAS.items() if v == n)): o
                 for n, o in opts.items() if o.get("lr") is None or n in KERAS.values()}
        order = sorted(named, key=lambda k: named[k]["val_loss"]["mean"])
        lines.append(f"| {label} | {says} | " + " < ".join(
            f"{k} ({named[k]['val_loss']['mean']:.3f} / {100 * named[k]['test_accuracy']['mean']:.1f} %)"
            for k in order) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print("Test accuracy (%), mean over 10 held-out seeds; the learned optimizer is the shipped paper LSTM of the "
          "task (it has no learning rate to tune: its tuned column is its committed evaluation).\n")
    print(table())
    print("\nCIFAR-10 (the study shows validation-loss curves only; the LSTM is the shipped `lstm_fmnist_family`, "
          "meta-trained on Fashion-MNIST MLPs), mean over 5 held-out seeds:\n")
    print(cifar_table())
