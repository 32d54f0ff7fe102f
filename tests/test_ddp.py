"""Multi-process meta-training through Lightning's DDP strategy: 2 CPU processes (gloo)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import lightning as L
import torch

from l2l_torch import load_learned_optimizer
from l2l_torch.export import export
from l2l_torch.reliability import theta_digest
from tests.helpers import REPO


class RankDigest(L.Callback):
    """Each rank writes what it trained on and a digest of its theta at the end of fit."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = dirpath

    def on_train_end(self, trainer, pl_module):
        rec = {"rank": trainer.global_rank, "world_size": trainer.world_size, "skipped": pl_module.skipped,
               "next_task": pl_module._next_task, "theta": theta_digest(pl_module.lopt.state_dict()),
               "global_step": trainer.global_step}
        Path(self.dirpath, f"rank{trainer.global_rank}.json").write_text(json.dumps(rec))


def test_ddp_two_cpu_processes(tmp_path):
    out = tmp_path / "run"
    # rank r samples seeds r, r + 2, r + 4, ...; seed 3 (rank 1's second optimizee) is poisoned with NaN,
    # so only rank 1 sees the fault: the skip must still be taken by both ranks, or DDP would hang
    cmd = [sys.executable, "train.py", "--task", "quadratic", "--out", str(out),
           "--trainer.strategy", "ddp_find_unused_parameters_true", "--trainer.devices", "2",
           "--trainer.accelerator", "cpu", "--trainer.max_steps", "4", "--trainer.enable_progress_bar", "false",
           "--checkpoint_every", "2", "--model.truncation.horizon", "4", "--model.truncation.unroll", "2", "--model.val_every", "4",
           "--model.val_tasks", "2", "--model.val_horizon", "3",
           "--model.task.class_path", "tests.test_reliability.NaNQuadraticFamily",
           "--model.task.init_args.bad_seeds", "[3]", "--model.task.init_args.num", "4",
           "--trainer.callbacks+=tests.test_ddp.RankDigest", f"--trainer.callbacks.dirpath={tmp_path}"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=240,
                       env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in range(2)]
    assert [x["world_size"] for x in ranks] == [2, 2]
    assert ranks[0]["theta"] == ranks[1]["theta"]  # gradients averaged: the replicas never drift apart
    assert ranks[0]["skipped"] == ranks[1]["skipped"] == 1  # the NaN on rank 1 was dropped on both ranks
    assert ranks[0]["global_step"] == 4
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 4 and ckpt["l2l"]["world_size"] == 2
    lopt, meta = load_learned_optimizer(out / "optimizer.pt")
    export(out / "checkpoints" / "last.ckpt", tmp_path / "exported.pt")
    lopt2, _ = load_learned_optimizer(tmp_path / "exported.pt")
    assert theta_digest(lopt2.state_dict()) == ranks[0]["theta"]
    assert all(torch.isfinite(p).all() for p in lopt2.parameters())
