"""What one training run of each held-out CNN costs on this CPU: Adam at lr 1e-3 on one thread, timed over 50 steps
after 5 warm-up steps, scaled to the model's steps (the final evaluation on 10,000 training images not included).

    L2L_DATA_DIR=../shared/data python research/experiments/heldout/cnn_run_times.py > research/experiments/heldout/cnn_run_times.txt

Per model the benchmark trains, with the default settings of ``python -m l2l_torch.benchmark heldout``, up to 39 runs
for Adam's learning-rate grid, up to 120 for ``adamw_tuned``'s 40 trials on 3 instances (fewer when pruned), and 5
per optimizer on the held-out seeds.
"""

import os
import time

import torch

from l2l_torch.evaluation import baseline_factory
from l2l_torch.heldout import HELDOUT_MODELS
from l2l_torch.training import param_groups

WARMUP, TIMED = 5, 50


def seconds_per_step(model) -> float:
    task = model.family(os.environ.get("L2L_DATA_DIR")).sample(1)
    params, buffers = task.init_params(1)
    params = {k: v.requires_grad_() for k, v in params.items()}
    opt = baseline_factory("adam", 1e-3)(param_groups(task, params))
    gen = torch.Generator().manual_seed(1)
    for i in range(WARMUP + TIMED):
        if i == WARMUP:
            start = time.perf_counter()
        batch = task.sample_batch("train", gen)
        opt.zero_grad()
        loss, buffers = task.loss(params, buffers, batch)
        loss.backward()
        opt.step()
    return (time.perf_counter() - start) / TIMED


def main() -> None:
    torch.set_num_threads(1)
    print("model | steps | s/step (Adam, 1 thread) | minutes per run")
    for m in HELDOUT_MODELS:
        if m.model == "mlp":
            continue
        s = seconds_per_step(m)
        print(f"{m.name} | {m.steps} | {s:.3f} | {s * m.steps / 60:.1f}")


if __name__ == "__main__":
    main()
