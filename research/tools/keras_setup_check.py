"""Why our default-lr baselines score below the study's Table 1: the study's network setup against ours.

    L2L_DATA_DIR=../shared/data python -m research.tools.keras_setup_check --out research/experiments/study_defaults

Trains the Table 1 network (Fashion-MNIST, MLP 784-20-10, sigmoid, batch 512, 100 steps) with the study's Keras
optimizers at their defaults (``keras_adam``, ``keras_rmsprop``, ``keras_sgd``, ``keras_adagrad`` of
:mod:`l2l_torch.evaluation`) under four setups: torch's default initialisation or Keras's (Glorot-uniform weights,
zero biases), and standardised inputs (ours) or pixels in [0, 1] (Keras's examples). Test accuracy over 5 seeds;
writes ``keras_setup_check.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from l2l_torch.data import load_raw
from l2l_torch.evaluation import baseline_factory

OPTIMIZERS = ("keras_adam", "keras_rmsprop", "keras_sgd", "keras_adagrad")
MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST pixel mean and std (as l2l_torch.data standardises)


def run(opt_name: str, keras_init: bool, unit_pixels: bool, seed: int, data) -> float:
    (xtr, ytr), (xte, yte) = data
    scale = (lambda x: x) if unit_pixels else (lambda x: (x - MEAN) / STD)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 20), nn.Sigmoid(), nn.Linear(20, 10))
    if keras_init:
        for m in model:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
    opt = baseline_factory(opt_name)([{"params": list(model.parameters())}])
    g = torch.Generator().manual_seed(seed)
    for _ in range(100):
        idx = torch.randint(xtr.shape[0], (512,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(scale(xtr[idx])), ytr[idx]).backward()
        opt.step()
    with torch.no_grad():
        return float((model(scale(xte)).argmax(-1) == yte).float().mean())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    xtr, ytr = load_raw("fashion_mnist", split="train")
    xte, yte = load_raw("fashion_mnist", split="test")
    data = ((xtr.float() / 255.0, ytr), (xte.float() / 255.0, yte))
    rows = []
    print("| initialisation | inputs | " + " | ".join(OPTIMIZERS) + " |")
    print("|---|---|" + "---|" * len(OPTIMIZERS))
    for keras_init in (False, True):
        for unit in (False, True):
            accs = {o: [run(o, keras_init, unit, s, data) for s in range(a.seeds)] for o in OPTIMIZERS}
            rows.append({"keras_init": keras_init, "unit_pixels": unit, "test_accuracy": accs})
            cells = [f"{100 * statistics.mean(v):.1f}" for v in accs.values()]
            print(f"| {'Glorot, zero bias' if keras_init else 'torch default'} | "
                  f"{'[0, 1]' if unit else 'standardised'} | " + " | ".join(cells) + " |", flush=True)
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "keras_setup_check.json").write_text(json.dumps({"seeds": a.seeds, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
