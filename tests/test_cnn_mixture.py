"""The configurable CNN and the CNN mixture family: shapes, deterministic and varied configurations, can_sample agreeing
with config_of, data on the family's device, a meta-gradient through a sampled CNN; the MLP mixture's new range."""

from __future__ import annotations

import pytest
import torch

from l2l_torch.learned_optimizers import SmallFCOptimizer
from l2l_torch.tasks.cnn_mixture import CNNMixtureFamily
from l2l_torch.tasks.image_classification import ImageClassificationFamily
from l2l_torch.tasks.mixture import MLPMixtureFamily
from l2l_torch.tasks.models import cnn
from tests.helpers import SHARED_DATA, needs_data, smoke_unroll, write_jpeg_folder


@pytest.mark.parametrize("channels", [[8], [8, 16], [4, 8, 16]])
@pytest.mark.parametrize("batchnorm,pooling", [(True, "max"), (False, "avg")])
def test_cnn_shapes(channels, batchnorm, pooling):
    for shape in ((1, 28, 28), (3, 32, 32)):
        net = cnn(shape, channels, batchnorm, pooling, "gelu")
        assert net(torch.zeros(5, *shape)).shape == (5, 10)
        assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net) == batchnorm
        pool = torch.nn.MaxPool2d if pooling == "max" else torch.nn.AvgPool2d
        assert sum(isinstance(m, pool) for m in net) == len(channels)


def test_cnn_bad_arguments():
    with pytest.raises(ValueError, match="pooling"):
        cnn((1, 28, 28), [8], pooling="median")
    with pytest.raises(ValueError, match="activation"):
        cnn((1, 28, 28), [8], activation="softsign")
    with pytest.raises(ValueError, match="channels"):
        cnn((1, 28, 28), [8] * 5)  # 28 -> 0 after five halvings
    with pytest.raises(ValueError, match="depths"):
        CNNMixtureFamily(depths=[5])


def test_configurations_are_deterministic_varied_and_sampleable():
    fam = CNNMixtureFamily(activations=["relu", "gelu"])  # no data is loaded to draw configurations
    assert fam.config_of(11) == fam.config_of(11)
    cfgs = [fam.config_of(s) for s in range(200)]
    assert {len(c["channels"]) for c in cfgs} == {1, 2, 3}
    assert {c["batchnorm"] for c in cfgs} == {True, False} and {c["pooling"] for c in cfgs} == {"max", "avg"}
    assert {c["dataset"] for c in cfgs} == {"fashion_mnist", "mnist", "cifar10"}
    assert {c["batch_size"] for c in cfgs} == {32, 64, 128, 256, 512}
    assert all(fam.can_sample(c) for c in cfgs)
    assert not fam.can_sample({**cfgs[0], "channels": [8, 8, 8, 8]})
    assert not fam.can_sample({**cfgs[0], "hidden": [20]})
    mlps = MLPMixtureFamily(activations=["sigmoid", "tanh", "relu", "gelu"], depths=[1, 2, 3],
                            widths=[16, 32, 64, 128, 256], batch_sizes=[32, 64, 128, 256, 512])
    mcfgs = [mlps.config_of(s) for s in range(200)]
    assert {c["activation"] for c in mcfgs} == {"sigmoid", "tanh", "relu", "gelu"}
    assert {len(c["hidden"]) for c in mcfgs} == {1, 2, 3}
    assert all(mlps.can_sample(c) for c in mcfgs) and not any(fam.can_sample(c) for c in mcfgs)
    assert not mlps.can_sample({**mcfgs[0], "hidden": [512]})


@needs_data("MNIST")
def test_sampled_cnn_trains_on_device_data_and_passes_a_meta_gradient():
    fam = CNNMixtureFamily(datasets=["mnist"], data_dir=str(SHARED_DATA), subset=300, train_eval_size=100,
                           eval_batch_size=100)
    seed = next(s for s in range(50) if len(fam.config_of(s)["channels"]) == 3)
    task = fam.sample(seed)
    cfg = fam.config_of(seed)
    assert task.describe()["channels"] == cfg["channels"] and task.normalization is not None
    batch = task.sample_batch("train", torch.Generator().manual_seed(0))
    assert batch[0].shape == (cfg["batch_size"], 1, 28, 28) and batch[0].device == task.device
    assert task.data["train"][0] is fam.families["mnist"].data()["train"][0]  # shared, not copied per instance
    smoke_unroll(SmallFCOptimizer(), task)
    params, buffers = task.init_params()
    assert set(task.evaluate(params, buffers, "val")) == {"loss", "accuracy"}


def test_cnn_on_a_cifar10_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("L2L_CACHE_DIR", str(tmp_path / "cache"))
    write_jpeg_folder(tmp_path / "CIFAR-10-images", {"train": 4, "test": 2})
    fam = CNNMixtureFamily(datasets=["cifar10"], data_dir=str(tmp_path), batch_sizes=[8], train_eval_size=20)
    task = fam.sample(1)
    assert task.sample_batch("train", torch.Generator().manual_seed(0))[0].shape == (8, 3, 32, 32)
    smoke_unroll(SmallFCOptimizer(), task)


def test_image_classification_family_builds_a_configured_cnn(tmp_path, monkeypatch):
    monkeypatch.setenv("L2L_CACHE_DIR", str(tmp_path / "cache"))
    write_jpeg_folder(tmp_path / "CIFAR-10-images", {"train": 2, "test": 1})
    fam = ImageClassificationFamily(dataset="cifar10", data_dir=str(tmp_path), model="cnn", channels=[8, 8, 8],
                                    batchnorm=False, pooling="avg", activation="elu", batch_size=4)
    assert fam.name == "cifar10_cnn_8x8x8_avg_elu"
    task = fam.sample(0)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in task.module)
    out, _ = task.forward(*task.init_params(), task.sample_batch("train", torch.Generator().manual_seed(0))[0])
    assert out.shape == (4, 10)
