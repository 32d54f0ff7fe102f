"""One parameter-kind rule: meta-training's task path and a user's own loop send every parameter of a CNN with
BatchNorm to the same network of a per-kind learned optimizer, and take identical steps."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from l2l_torch import (
    LearnedOptimizer,
    LSTMOptimizer,
    param_groups_by_kind,
    param_kinds,
    save_learned_optimizer,
)
from l2l_torch.evaluation import param_groups, train_optimizee
from l2l_torch.tasks.image_classification import ImageClassificationTask
from l2l_torch.tasks.models import build_model


def _task() -> ImageClassificationTask:
    g = torch.Generator().manual_seed(0)
    data = {s: (torch.randn(64, 3, 16, 16, generator=g), torch.randint(10, (64,), generator=g))
            for s in ("train", "val", "test")}
    torch.manual_seed(0)
    return ImageClassificationTask(0, data, build_model("convdense", (3, 16, 16), hidden=[8]), batch_size=16)


@pytest.fixture()
def per_kind_ckpt(tmp_path):
    torch.manual_seed(3)
    path = tmp_path / "per_kind.pt"
    save_learned_optimizer(LSTMOptimizer(hidden_size=6, per_kind=True, output_scale=0.05), path,
                           {"param_kinds": ["conv", "dense"]})
    return path


def test_batchnorm_follows_its_conv_everywhere():
    task = _task()
    kinds = task.param_kinds()
    assert kinds == param_kinds(task.module)
    bn = [n for n, m in task.module.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert bn and all(kinds[f"{n}.weight"] == kinds[f"{n}.bias"] == "conv" for n in bn)
    user = {id(p): g["kind"] for g in param_groups_by_kind(task.module) for p in g["params"]}
    assert [user[id(p)] for p in task.module.parameters()] == list(kinds.values())
    params = dict(task.module.named_parameters())
    evaluation = {id(p): g["kind"] for g in param_groups(task, params) for p in g["params"]}
    assert {n: evaluation[id(p)] for n, p in params.items()} == kinds


def test_task_path_and_user_loop_take_identical_steps(per_kind_ckpt):
    task, steps, seed = _task(), 3, 0
    run = train_optimizee(task, lambda groups: LearnedOptimizer(groups, checkpoint=per_kind_ckpt), steps, seed,
                          keep_params=True)
    # the user's loop: the same network, initial weights and batches, in an nn.Module
    init, buffers = task.init_params(seed)
    model = copy.deepcopy(task.module)
    model.load_state_dict({**init, **buffers})
    model.train()
    opt = LearnedOptimizer(param_groups_by_kind(model), checkpoint=per_kind_ckpt)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = task.sample_batch("train", gen)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), run.params[name], msg=name)


def test_per_kind_optimizer_refuses_parameters_without_kinds(per_kind_ckpt):
    with pytest.raises(ValueError, match="param_groups_by_kind"):
        LearnedOptimizer(_task().module.parameters(), checkpoint=per_kind_ckpt)
