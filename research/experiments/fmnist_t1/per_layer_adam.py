"""How far can a hand-tuned Adam get on fmnist_t1 in 100 steps? Context for the 83 % goal.

Adam with one learning rate per layer (first layer's weights and bias at ``lr1``, the output layer's at
``lr2``; betas (0.9, 0.99)) on a grid, each point on 3 held-out instances (the first 3 evaluation seeds of
``evaluate.py``). A single learning rate (lr1 = lr2) is part of the grid. Writes ``per_layer_adam.json``.

    L2L_DATA_DIR=../shared/data OMP_NUM_THREADS=1 python research/experiments/fmnist_t1/per_layer_adam.py
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import torch

from l2l_torch.evaluation import train_optimizee
from l2l_torch.tasks.base import TEST_SEED_OFFSET
from l2l_torch.tasks.image_classification import ImageClassificationFamily

LR1 = (0.001, 0.002, 0.003, 0.005, 0.01, 0.02)
LR2 = (0.01, 0.03, 0.1, 0.2, 0.5)
SEEDS = [TEST_SEED_OFFSET + i for i in range(3)]


def per_layer_adam(lr1: float, lr2: float):
    def make(groups):
        params = [p for g in groups for p in g["params"]]  # 1.weight, 1.bias, 3.weight, 3.bias
        return torch.optim.Adam([{"params": params[:2], "lr": lr1}, {"params": params[2:], "lr": lr2}],
                                betas=(0.9, 0.99))
    return make


def main() -> None:
    fam = ImageClassificationFamily(dataset="fashion_mnist", model="mlp", hidden=[20], activation="sigmoid",
                                    batch_size=512)
    rows = []
    for lr1, lr2 in itertools.product(LR1, LR2):
        runs = [train_optimizee(fam.sample(s), per_layer_adam(lr1, lr2), 100, s) for s in SEEDS]
        loss = sum(r.final["train_loss"] for r in runs) / len(runs)
        acc = sum(r.final["test_accuracy"] for r in runs) / len(runs)
        rows.append({"lr1": lr1, "lr2": lr2, "train_loss": round(loss, 4), "test_accuracy": round(acc, 4)})
        print(rows[-1], flush=True)
    best_loss = min(rows, key=lambda r: r["train_loss"])
    best_acc = max(rows, key=lambda r: r["test_accuracy"])
    out = {"task": "fmnist_t1", "steps": 100, "seeds": SEEDS, "betas": [0.9, 0.99], "grid": rows,
           "best_by_train_loss": best_loss, "best_by_test_accuracy": best_acc}
    path = Path(__file__).with_suffix(".json")
    path.write_text(json.dumps(out, indent=1))
    print(f"best by train loss {best_loss}\nbest by test accuracy {best_acc}\nwrote {path}")


if __name__ == "__main__":
    main()
