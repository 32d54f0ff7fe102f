"""The MLP mixture family: deterministic per seed, varied, scaled training loss only; MetaModule's
log-uniform truncations and horizon curriculum."""

from __future__ import annotations

import pytest
import torch

from l2l_torch.learned_optimizers import SmallFCOptimizer
from l2l_torch.tasks.base import VAL_SEED_OFFSET
from l2l_torch.tasks.mixture import MLPMixtureFamily
from l2l_torch.truncation import TruncationSchedule
from tests.helpers import SHARED_DATA, needs_data, smoke_train, smoke_unroll

needs_mix_data = needs_data("FashionMNIST", "MNIST")  # the MetaModule tests below use quadratics


@pytest.fixture(scope="module")
def family() -> MLPMixtureFamily:
    return MLPMixtureFamily(data_dir=str(SHARED_DATA), subset=600, train_eval_size=200, eval_batch_size=200)


@needs_mix_data
def test_mixture_is_deterministic_and_varied(family):
    assert family.config_of(7) == family.config_of(7)
    cfgs = [family.config_of(s) for s in range(60)]
    assert {c["activation"] for c in cfgs} == {"sigmoid", "tanh", "relu"}
    assert {c["dataset"] for c in cfgs} == {"fashion_mnist", "mnist"}
    assert {len(c["hidden"]) for c in cfgs} == {1, 2}
    assert len({c["batch_size"] for c in cfgs}) == 3
    scales = [c["loss_scale"] for c in cfgs]
    assert 0.1 <= min(scales) < 0.5 and 2.0 < max(scales) <= 10.0
    # validation instances come from the same mixture (other seeds, same variety)
    val = [family.config_of(VAL_SEED_OFFSET + s) for s in range(60)]
    assert {c["activation"] for c in val} == {"sigmoid", "tanh", "relu"} and val != cfgs


@needs_mix_data
def test_sampled_task_shapes_and_scaled_training_loss(family):
    seed = next(s for s in range(100) if len(family.config_of(s)["hidden"]) == 2)
    task = family.sample(seed)
    cfg = family.config_of(seed)
    params, buffers = task.init_params()
    h1, h2 = cfg["hidden"]
    assert params["1.weight"].shape == (h1, 784) and params["3.weight"].shape == (h2, h1)
    batch = task.sample_batch("train", torch.Generator().manual_seed(0))
    assert batch[0].shape[0] == cfg["batch_size"]
    scaled, _ = task.loss(params, buffers, batch)
    plain = torch.nn.functional.cross_entropy(task.forward(params, buffers, batch[0])[0], batch[1])
    torch.testing.assert_close(scaled, plain * cfg["loss_scale"])
    # evaluation reports the plain cross-entropy (comparable across instances)
    ev = task.evaluate(params, buffers, "val")
    assert 1.5 < ev["loss"] < 3.5 and 0.0 <= ev["accuracy"] <= 1.0
    assert task.describe()["loss_scale"] == cfg["loss_scale"]


@needs_mix_data
def test_bad_mixture_config(family):
    with pytest.raises(ValueError, match="activations"):
        MLPMixtureFamily(activations=["softsign"], data_dir=str(SHARED_DATA))
    with pytest.raises(ValueError, match="loss_scale"):
        MLPMixtureFamily(loss_scale_min=2.0, loss_scale_max=1.0, data_dir=str(SHARED_DATA))


@needs_mix_data
def test_smoke_unroll_small_fc_on_mixture(family):
    smoke_unroll(SmallFCOptimizer(), family.sample(3))


@needs_mix_data
def test_smoke_train_mixture_config(tmp_path, monkeypatch):
    monkeypatch.setenv("L2L_DATA_DIR", str(SHARED_DATA))
    smoke_train("lopt_small_fc_mix", tmp_path, "--model.task.init_args.subset", "600",
                "--model.task.init_args.train_eval_size", "200")


def _schedule(**kw) -> TruncationSchedule:
    return TruncationSchedule(horizon=100, unroll=20, **kw)


def test_log_uniform_truncation_lengths():
    torch.manual_seed(0)
    m = _schedule(min_unroll=2)
    ks = [m.length(1000) for _ in range(2000)]
    assert min(ks) == 2 and max(ks) == 20
    # log-uniform: about as many lengths in [2, 6) as in [6, 20]
    short = sum(k < 6 for k in ks) / len(ks)
    assert 0.35 < short < 0.65
    assert m.length(3) <= 3  # never past the horizon
    assert _schedule().length(1000) == 20  # default: fixed length
    with pytest.raises(ValueError, match="min_unroll"):
        _schedule(min_unroll=30)


def test_unroll_that_does_not_divide_the_horizon():
    m = TruncationSchedule(horizon=100, unroll=30)
    lengths, done = [], 0
    while done < 100:  # how training_step walks one optimizee through its horizon
        lengths.append(m.length(100 - done))
        done += lengths[-1]
    assert lengths == [30, 30, 30, 10]
    with pytest.raises(ValueError, match="unroll"):
        TruncationSchedule(horizon=10, unroll=20)


def test_horizon_curriculum():
    m = _schedule(horizon_curriculum=100)
    assert [m.horizon_at(s) for s in (0, 50, 100, 1000)] == [20, 60, 100, 100]
    assert _schedule().horizon_at(0) == 100
    with pytest.raises(ValueError, match="horizon_curriculum"):
        _schedule(horizon_curriculum=-1)
