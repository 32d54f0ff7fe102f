"""Does a learned optimizer diverge within 2,000 steps on the held-out models?

    L2L_DATA_DIR=../shared/data OMP_NUM_THREADS=1 python research/experiments/heldout/divergence_2000.py \
        --checkpoint small_fc_warmup_pes --models fmnist_mlp_4x128_relu,mnist_mlp_512_tanh --seeds 5 > OUT.md

For each held-out model of :mod:`l2l_torch.heldout` named in ``--models`` (default: all), trains ``--seeds``
held-out instances (the benchmark's, from 2,000,000) for ``--steps`` steps (default 2,000, longer than any
meta-training horizon and than most models' own benchmark runs) with ``LearnedOptimizer`` at ``--lr`` (default 1: the
step as shipped). A run diverges when a batch loss is not finite or exceeds 1e8 (:func:`l2l_torch.training.train_optimizee`,
the rule of every evaluation). One markdown row per model: runs, diverged runs, the mean batch loss of the first and
of the last 100 steps, the final training loss, and the seconds per run.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import torch

from l2l_torch.checkpoint import load_learned_optimizer
from l2l_torch.heldout import HELDOUT_MODELS, model
from l2l_torch.hypergradient import HypergradientLR
from l2l_torch.optim import LearnedOptimizer
from l2l_torch.pretrained import checkpoint_path
from l2l_torch.tasks.base import TEST_SEED_OFFSET
from l2l_torch.training import train_optimizee


def make(lopt, lr: float, beta: float | None):
    """The runs' optimizer factory: the learned optimizer at ``lr``, adapted by hypergradient descent when ``beta``."""
    def factory(groups):
        opt = LearnedOptimizer(groups, lopt=lopt, lr=lr)
        if beta is not None:
            HypergradientLR(opt, beta=beta)
        return opt
    return factory


def row(m, lopt, lr: float, seeds: int, steps: int, beta: float | None = None) -> str:
    task_family = m.family(os.environ.get("L2L_DATA_DIR"))
    diverged, first, last, final, seconds = 0, [], [], [], []
    for i in range(seeds):
        task = task_family.sample(TEST_SEED_OFFSET + i)
        start = time.perf_counter()
        r = train_optimizee(task, make(lopt, lr, beta), steps, TEST_SEED_OFFSET + i)
        seconds.append(time.perf_counter() - start)
        diverged += r.diverged
        if not r.diverged:
            first.append(r.losses[:100].mean().item())
            last.append(r.losses[-100:].mean().item())
            final.append(r.final["train_loss"])

    def mean(xs: list[float]) -> str:
        return f"{sum(xs) / len(xs):.4g}" if xs and all(math.isfinite(x) for x in xs) else "–"

    return (f"| {m.name} | {m.steps} | {seeds} | {diverged} | {mean(first)} | {mean(last)} | {mean(final)} | "
            f"{sum(seconds) / len(seconds):.0f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="small_fc_warmup_pes", help="a learned-optimizer file or a shipped name")
    p.add_argument("--models", help="comma-separated held-out model names (default: all)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--lr", type=float, default=1.0)
    p.add_argument("--hypergradient", type=float, metavar="BETA", help="adapt the lr online at this rate")
    a = p.parse_args()
    models = [model(n) for n in a.models.split(",")] if a.models else list(HELDOUT_MODELS)
    lopt, _ = load_learned_optimizer(checkpoint_path(a.checkpoint))  # read once, shared by every run
    adapted = "" if a.hypergradient is None else f" adapted by HypergradientLR(beta={a.hypergradient:g})"
    print(f"`{a.checkpoint}` at lr {a.lr:g}{adapted}, {a.steps} steps, held-out instances {TEST_SEED_OFFSET} to "
          f"{TEST_SEED_OFFSET + a.seeds - 1}; {torch.get_num_threads()} thread(s)\n")
    print("| model | its benchmark steps | runs | diverged | batch loss, first 100 steps | last 100 steps | "
          "final train loss | seconds per run |")
    print("|---|---|---|---|---|---|---|---|")
    for m in models:
        print(row(m, lopt, a.lr, a.seeds, a.steps, a.hypergradient), flush=True)


if __name__ == "__main__":
    main()
