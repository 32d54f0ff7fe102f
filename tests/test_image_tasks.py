"""Image classification tasks: shapes, losses, BatchNorm buffers, parameter kinds, smoke runs of every config."""

from __future__ import annotations

import math

import pytest
import torch

from l2l_torch.evaluation import baseline_factory, train_optimizee
from l2l_torch.learned_optimizers import LSTMOptimizer
from l2l_torch.tasks.image_classification import ImageClassificationFamily
from l2l_torch.tasks.models import build_model
from tests.helpers import SHARED_DATA, needs_data, smoke_train, smoke_unroll
from tests.test_data import write_jpeg_folder

needs_fmnist = needs_data("FashionMNIST")  # the CIFAR smoke runs write their own images


@pytest.fixture(autouse=True)
def _env(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("L2L_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "l2l_cache"))
    monkeypatch.setenv("L2L_OFFLINE", "1")
    monkeypatch.setenv("L2L_DATA_DIR", str(SHARED_DATA))


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    """A tiny CIFAR-10-images copy (3 train and 1 test JPEG per class): CI never decodes the 60k images."""
    root = tmp_path_factory.mktemp("cifar")
    write_jpeg_folder(root / "CIFAR-10-images", {"train": 3, "test": 1})
    return root


def family(model: str, **kw) -> ImageClassificationFamily:
    return ImageClassificationFamily(dataset="fashion_mnist", model=model, subset=300, batch_size=8, **kw)


@needs_fmnist
@pytest.mark.parametrize("model,hidden,n_params", [
    ("mlp", [20], 784 * 20 + 20 + 20 * 10 + 10),
    ("mlp", [20, 20], 784 * 20 + 20 + 20 * 20 + 20 + 20 * 10 + 10),
    ("conv", None, (9 * 16 + 16 + 32) + (16 * 9 * 32 + 32 + 64) + (32 * 9 * 10 + 10)),
    ("convdense", [20], (9 * 16 + 16 + 32) + (16 * 9 * 32 + 32 + 64) + (32 * 9 * 64 + 64 + 128)
     + (64 * 3 * 3 * 20 + 20) + (20 * 10 + 10)),
])
def test_task_shapes_and_initial_loss(model, hidden, n_params):
    task = family(model, hidden=hidden).sample(3)
    params, buffers = task.init_params(3)
    assert sum(p.numel() for p in params.values()) == n_params
    batch = task.sample_batch("train", torch.Generator().manual_seed(0))
    assert batch[0].shape == (8, 1, 28, 28) and batch[1].shape == (8,)
    out, _ = task.forward(params, buffers, batch[0])
    assert out.shape == (8, 10)
    loss, _ = task.loss(params, buffers, batch)
    assert loss.ndim == 0 and abs(float(loss) - math.log(10)) < 1.0  # near chance at init
    metrics = task.evaluate(params, buffers, "test")
    assert set(metrics) == {"loss", "accuracy"} and 0.0 <= metrics["accuracy"] <= 1.0


@needs_fmnist
def test_same_seed_same_init_and_batches():
    fam = family("mlp")
    a, b = fam.sample(5), fam.sample(5)
    pa, _ = a.init_params(5)
    pb, _ = b.init_params(5)
    pc, _ = a.init_params(6)
    assert all(torch.equal(pa[k], pb[k]) for k in pa) and not torch.equal(pa["1.weight"], pc["1.weight"])
    ba = a.sample_batch("train", torch.Generator().manual_seed(1))
    bb = b.sample_batch("train", torch.Generator().manual_seed(1))
    assert torch.equal(ba[0], bb[0])
    assert a.data["train"][0].data_ptr() == b.data["train"][0].data_ptr()  # instances share the dataset


@needs_fmnist
def test_batchnorm_buffers_are_functional():
    task = family("conv").sample(0)
    params, buffers = task.init_params(0)
    before = {k: v.clone() for k, v in buffers.items()}
    _, new = task.loss(params, buffers, task.sample_batch("train", torch.Generator().manual_seed(0)))
    assert all(torch.equal(before[k], buffers[k]) for k in buffers)  # input untouched
    assert not torch.equal(new["1.running_mean"], buffers["1.running_mean"])  # running stats moved
    assert int(new["1.num_batches_tracked"]) == 1


@needs_fmnist
def test_full_batches_use_fixed_train_subset():
    task = ImageClassificationFamily(dataset="fashion_mnist", subset=300, train_eval_size=100,
                                     eval_batch_size=40).sample(0)
    assert [b[0].shape[0] for b in task.full_batches("train")] == [40, 40, 20]
    assert sum(b[0].shape[0] for b in task.full_batches("val")) == 30
    assert task.full_batches("test") is task.full_batches("test")  # built once


@needs_fmnist
def test_param_kinds_and_per_kind_lstm():
    task = family("convdense").sample(0)
    kinds = task.param_kinds()
    assert kinds["0.weight"] == kinds["0.bias"] == "conv"  # conv bias is conv
    assert kinds["1.weight"] == kinds["1.bias"] == "conv"  # BatchNorm of a conv block follows its conv
    assert kinds["13.weight"] == kinds["15.bias"] == "dense"
    lopt = LSTMOptimizer(per_kind=True)
    params, _ = task.init_params(0)
    state = lopt.init_state(params, kinds)
    assert set(state["groups"]) == {"conv", "dense"}
    assert state["groups"]["dense"] == ["13.weight", "13.bias", "15.weight", "15.bias"]
    n_conv = sum(params[n].numel() for n in state["groups"]["conv"])
    assert state["hidden"]["conv"][0][0].shape == (20, n_conv)  # (H, N): coordinate-minor layout
    smoke_unroll(lopt, task)
    # both LSTMs received a meta-gradient
    assert all(p.grad is not None for p in lopt.nets["conv"].parameters())
    assert all(p.grad is not None for p in lopt.nets["dense"].parameters())


@needs_fmnist
@pytest.mark.parametrize("model", ["mlp", "conv"])
def test_smoke_unroll(model):
    smoke_unroll(LSTMOptimizer(per_kind=model == "conv"), family(model).sample(1), steps=3)


@needs_fmnist
def test_adam_learns_a_little():
    task = ImageClassificationFamily(dataset="fashion_mnist", subset=2000, batch_size=64).sample(0)
    r = train_optimizee(task, baseline_factory("adam", 0.01), 30, 0)
    assert not r.diverged and r.final["train_loss"] < 1.5 and r.final["test_accuracy"] > 0.4


def test_bad_family_arguments():
    with pytest.raises(ValueError, match="model"):
        ImageClassificationFamily(model="resnet")
    with pytest.raises(ValueError, match="activation"):
        ImageClassificationFamily(activation="softsign")
    with pytest.raises(ValueError, match="pooling"):
        ImageClassificationFamily(model="cnn", pooling="median")
    with pytest.raises(ValueError, match="source"):
        ImageClassificationFamily(source="ftp")
    with pytest.raises(ValueError, match="activation"):
        build_model("mlp", (1, 28, 28), activation="swish")


@needs_fmnist
@pytest.mark.parametrize("name", ["fmnist_t1", "fmnist_t2", "fmnist_t3", "fmnist_w40"])
def test_smoke_train_fmnist_configs(name, tmp_path):
    out = smoke_train(name, tmp_path / name, "--model.task.init_args.subset", "600")
    assert (out / "optimizer.pt").is_file()


@pytest.mark.parametrize("name", ["cifar_conv", "cifar_convdense"])
def test_smoke_train_cifar_configs(name, tmp_path, cifar_dir):
    out = smoke_train(name, tmp_path / name, "--model.task.init_args.data_dir", str(cifar_dir),
                      "--model.truncation.unroll", "2", "--model.truncation.horizon", "4")
    assert (out / "optimizer.pt").is_file()
