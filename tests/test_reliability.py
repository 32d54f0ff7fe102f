"""Reliability: atomic checkpoints, exact resume after SIGKILL, NaN faults dropped, divergence reported."""

from __future__ import annotations

import json
import math

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from l2l_torch import LSTMOptimizer, load_learned_optimizer
from l2l_torch.callbacks import ExportBestOptimizer
from l2l_torch.checkpoint import atomic_torch_save
from l2l_torch.evaluation import baseline_factory, compare, summarize, train_optimizee
from l2l_torch.meta_module import MetaModule
from l2l_torch.plots import markdown_table
from l2l_torch.reliability import AtomicCheckpointIO, theta_digest
from l2l_torch.tasks.quadratic import QuadraticFamily, QuadraticTask
from l2l_torch.truncation import TruncationSchedule


class NaNQuadraticFamily(QuadraticFamily):
    """Quadratics whose training instances with a seed in ``bad_seeds`` have NaN data (a numerical fault
    in the middle of meta-training: the loss and every gradient of that optimizee are NaN)."""

    def __init__(self, bad_seeds: list[int] = (2,), dim: int = 10, num: int = 1) -> None:
        super().__init__(dim=dim, num=num)
        self.bad_seeds = tuple(bad_seeds)

    def sample(self, seed: int) -> QuadraticTask:
        task = super().sample(seed)
        if seed in self.bad_seeds:
            task.w = task.w * float("nan")
        return task


def test_atomic_save_keeps_previous_file(tmp_path):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"step": torch.tensor(1)}, path)
    with pytest.raises(Exception):  # noqa: B017 - pickling a lambda fails part way through the write
        atomic_torch_save({"step": torch.tensor(2), "bad": lambda: 0}, path)
    assert int(torch.load(path, weights_only=True)["step"]) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def _trainer(tmp_path, max_steps, callbacks=()):
    return L.Trainer(max_steps=max_steps, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                     enable_model_summary=False, inference_mode=False, default_root_dir=tmp_path,
                     plugins=[AtomicCheckpointIO()], callbacks=list(callbacks))


def _module(family, **kw):
    torch.manual_seed(0)
    return MetaModule(family, LSTMOptimizer(hidden_size=8, preprocess="none"),
                      truncation=TruncationSchedule(horizon=4, unroll=2), val_every=3, val_tasks=2, val_horizon=5, **kw)


def test_nan_optimizee_is_dropped_and_checkpoints_stay_finite(tmp_path):
    module = _module(NaNQuadraticFamily(bad_seeds=(2,), num=4))
    ckpt = ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True, every_n_train_steps=1)
    trainer = _trainer(tmp_path, 8, [ckpt, ExportBestOptimizer(dirpath=str(tmp_path))])
    trainer.fit(module)
    assert module.skipped == 1  # the one NaN instance (the third optimizee, mid-run)
    assert trainer.global_step == 8  # training went on to the end
    assert all(torch.isfinite(p).all() for p in module.lopt.parameters())
    files = sorted((tmp_path / "checkpoints").glob("*.ckpt"))
    assert files
    for f in files:
        c = torch.load(f, weights_only=True)
        assert all(torch.isfinite(v).all() for v in c["state_dict"].values()), f
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["l2l"]["skipped"] == 1
    lopt, _ = load_learned_optimizer(tmp_path / "optimizer.pt")
    assert all(torch.isfinite(p).all() for p in lopt.parameters())


class NaNMetaGradient(L.Callback):
    """Make theta's gradient NaN at one meta-step (a hook on one weight of theta)."""

    def __init__(self, at_batch: int) -> None:
        self.at_batch, self.batch, self.theta_before = at_batch, -1, None

    def on_fit_start(self, trainer, pl_module):
        w = next(pl_module.lopt.parameters())
        w.register_hook(lambda g: g * float("nan") if self.batch == self.at_batch else g)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batch += 1
        if self.batch == self.at_batch:
            self.theta_before = theta_digest(pl_module.lopt.state_dict())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.batch == self.at_batch:  # the poisoned step changed nothing
            assert theta_digest(pl_module.lopt.state_dict()) == self.theta_before


def test_nan_meta_gradient_is_dropped(tmp_path):
    module = _module(QuadraticFamily(num=4))
    inject = NaNMetaGradient(at_batch=3)
    trainer = _trainer(tmp_path, 6, [inject, ModelCheckpoint(dirpath=tmp_path / "c", save_last=True,
                                                             every_n_train_steps=1)])
    trainer.fit(module)
    assert inject.theta_before is not None and module.skipped == 1
    assert trainer.global_step == 6
    c = torch.load(tmp_path / "c" / "last.ckpt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in c["state_dict"].values())


def test_resume_is_exact(tmp_path):
    """Stopping after 3 meta-steps and resuming to 6 gives bit-identical theta to an uninterrupted run
    (theta, Adam state, task counter and the optimizee in flight are all restored)."""
    import train

    common = ["--task", "quadratic", "--checkpoint_every", "1", "--trainer.enable_progress_bar", "false",
              "--model.truncation.horizon", "4", "--model.truncation.unroll", "2", "--model.val_every", "4", "--model.val_tasks", "1",
              "--model.val_horizon", "3", "--model.task.init_args.num", "4"]
    train.main([*common, "--out", str(tmp_path / "ref"), "--trainer.max_steps", "6"])
    train.main([*common, "--out", str(tmp_path / "res"), "--trainer.max_steps", "3"])
    mid = torch.load(tmp_path / "res" / "checkpoints" / "last.ckpt", weights_only=True)
    assert mid["global_step"] == 3 and mid["l2l"]["optimizees"][0]["step"] == 2  # an optimizee mid-horizon
    train.main([*common, "--out", str(tmp_path / "res"), "--trainer.max_steps", "6", "--ckpt_path", "last"])
    ref = torch.load(tmp_path / "ref" / "checkpoints" / "last.ckpt", weights_only=True)
    res = torch.load(tmp_path / "res" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ref["global_step"] == res["global_step"] == 6
    assert ref["l2l"]["next_task"] == res["l2l"]["next_task"]
    assert theta_digest(ref["state_dict"]) == theta_digest(res["state_dict"])
    restarts = [json.loads(x) for x in (tmp_path / "res" / "restarts.jsonl").read_text().splitlines()]
    assert [r["global_step"] for r in restarts] == [0, 3]
    assert restarts[1]["theta_sha256"] == theta_digest(mid["state_dict"], "lopt.")


def test_diverged_run_is_reported_as_diverged():
    family = QuadraticFamily(num=2)
    task = family.sample(0)
    r = train_optimizee(task, baseline_factory("sgd", 1e3), steps=30, seed=0)
    assert r.diverged and all(math.isnan(v) for v in r.final.values())
    ok = train_optimizee(task, baseline_factory("sgd", 1e-3), steps=30, seed=0)
    s = summarize([r, ok])
    assert s["diverged"] == 1 and s["train_loss"]["mean"] == ok.final["train_loss"]
    res = compare(family, {"sgd_huge": (baseline_factory("sgd", 1e3), 1e3)}, steps=30, seeds=2)
    assert res["sgd_huge"]["diverged"] == 2 and math.isnan(res["sgd_huge"]["final_loss"]["mean"])
    row = markdown_table({"optimizers": res}).splitlines()[-1]
    assert "diverged" in row and row.rstrip(" |").endswith("2")


def test_no_checkpoint_with_non_finite_theta(tmp_path):
    module = _module(QuadraticFamily(num=2))
    trainer = _trainer(tmp_path, 1)
    trainer.fit(module)
    trainer.save_checkpoint(tmp_path / "ok.ckpt")
    with torch.no_grad():
        next(module.lopt.parameters()).fill_(float("inf"))
    with pytest.raises(RuntimeError, match="non-finite"):
        trainer.save_checkpoint(tmp_path / "bad.ckpt")
    assert not (tmp_path / "bad.ckpt").exists() and (tmp_path / "ok.ckpt").exists()
