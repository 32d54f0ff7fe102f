"""affNIST data (loader + generator) and the STN task of Experiment 5."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from l2l_torch.affnist import (
    CANVAS,
    DigitSets,
    affnist_transform,
    center_on_canvas,
    load_affnist_mat,
    load_digit_sets,
)
from l2l_torch.learned_optimizers import LSTMOptimizer
from l2l_torch.tasks.stn import STNFamily, STNTask
from l2l_torch.tasks.stn_model import ssim_loss, ssim_per_image, warp
from tests.helpers import SHARED_DATA, needs_data, smoke_train, smoke_unroll


def fake_digits(n: int, seed: int = 0) -> torch.Tensor:
    """(n, 1, 28, 28) blobs in the central 20x20 box, like MNIST digits."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 28, 28)
    x[:, :, 4:24, 6:22] = torch.rand(n, 1, 20, 16, generator=g)
    return x


def fake_sets(n: int = 12) -> DigitSets:
    x = fake_digits(5 * n + 1)
    splits = {"train": affnist_transform(x[:n], 0)[0], "val": affnist_transform(x[n:2 * n], 1)[0],
              "test8": affnist_transform(x[2 * n:3 * n], 2)[0], "test1": affnist_transform(x[3 * n:4 * n], 3)[0],
              "val1": affnist_transform(x[4 * n:5 * n], 4)[0]}
    return DigitSets(splits, center_on_canvas(x[-1:]), "fake")


def write_affnist_mat(path, images: np.ndarray, labels: np.ndarray) -> None:
    """An affNIST-format file: ``image`` 1600 x N uint8 (one row-major 40x40 image per column)."""
    from scipy.io import savemat

    n = images.shape[0]
    one_hot = np.zeros((10, n), np.uint8)
    one_hot[labels, np.arange(n)] = 1
    savemat(str(path), {"affNISTdata": {"image": images.reshape(n, -1).T.astype(np.uint8),
                                        "label_int": labels.astype(np.uint8), "label_one_of_n": one_hot}})


# ----------------------------------------------------------------------------- warping and SSIM
def test_identity_warp_returns_input(on_device):
    x = torch.rand(3, 1, CANVAS, CANVAS)
    theta = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(3, 2, 3)
    torch.testing.assert_close(warp(x, theta), x, atol=1e-5, rtol=0)


def test_warp_translation_moves_content(on_device):
    x = torch.zeros(1, 1, CANVAS, CANVAS)
    x[..., 10, 10] = 1.0
    # sampling at x + 2/40*2 (normalized) = 2 pixels to the right of each output pixel shifts content left by 2
    theta = torch.tensor([[[1.0, 0, 4.0 / CANVAS], [0, 1.0, 0]]])
    out = warp(x, theta)
    assert float(out[0, 0, 10, 8]) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("scale,blur", [(1, 0.0), (2, 1.0)])
def test_ssim_loss_zero_for_identical_images(scale, blur):
    x = fake_sets(4).splits["train"]
    assert float(ssim_loss(x, x, 11, scale, blur)) == pytest.approx(0.0, abs=1e-5)
    black = torch.zeros(2, 1, CANVAS, CANVAS)
    assert float(ssim_loss(black, black, 11, scale, blur)) == pytest.approx(0.0, abs=1e-6)
    assert float(ssim_loss(x, x.flip(-1), 11, scale, blur)) > 0.05  # different images cost something


def test_ssim_per_image_broadcasts_target(on_device):
    x = torch.rand(5, 1, CANVAS, CANVAS)
    s = ssim_per_image(x, x[:1])
    assert s.shape == (5,) and float(s[0]) == pytest.approx(1.0, abs=1e-5) and bool((s[1:] < 0.9).all())


# ----------------------------------------------------------------------------- generator
def test_generator_deterministic_shapes_ranges():
    digits = fake_digits(16)
    a, mat = affnist_transform(digits, seed=3)
    b, _ = affnist_transform(digits, seed=3)
    c, _ = affnist_transform(digits, seed=4)
    assert a.shape == (16, 1, CANVAS, CANVAS) and mat.shape == (16, 2, 3)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1 and a.dtype == torch.float32
    # rotation and shear keep the determinant; the two scales in 0.8..1.2 give it
    det = torch.linalg.det(mat[:, :, :2].double())
    assert (det > 0.8**2 - 1e-6).all() and (det < 1.2**2 + 1e-6).all()
    # the digit stays on the canvas: most of its mass is kept, and the warp is not the identity
    ratio = a.sum((1, 2, 3)) / digits.sum((1, 2, 3))
    assert (ratio > 0.6).all() and (ratio < 1.6).all()
    assert not torch.allclose(a, center_on_canvas(digits))


def test_generator_rejects_bad_shapes():
    with pytest.raises(ValueError, match="N, 1, H, W"):
        affnist_transform(torch.rand(2, 28, 28), 0)
    with pytest.raises(ValueError, match="do not fit"):
        affnist_transform(torch.rand(2, 1, 50, 50), 0)


# ----------------------------------------------------------------------------- .mat loader
def test_loader_reads_mat_fixture(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 40, 40)).astype(np.uint8)
    images[0, 3, 17] = 255  # an asymmetric mark: row 3, column 17 (catches a transposed read)
    images[0, 17, 3] = 0
    labels = np.array([8, 6, 1, 8, 0])
    write_affnist_mat(tmp_path / "x.mat", images, labels)
    x, y = load_affnist_mat(tmp_path / "x.mat")
    assert x.shape == (5, 1, 40, 40) and y.tolist() == labels.tolist()
    torch.testing.assert_close(x[:, 0], torch.from_numpy(images).float() / 255)
    assert x[0, 0, 3, 17] == 1.0 and x[0, 0, 17, 3] == 0.0


def test_digit_sets_use_mat_files_when_present(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "affNIST"
    root.mkdir()
    labels = np.array([8, 8, 8, 6, 1, 8, 6, 1])
    for name in ("training", "validation", "test"):
        write_affnist_mat(root / f"{name}.mat", rng.integers(0, 256, (8, 40, 40)), labels)
    sets = load_digit_sets(tmp_path, n_train=3, n_val=2, n_test=2, target_index=1)
    assert sets.source.startswith("affNIST .mat files")
    assert {k: v.shape[0] for k, v in sets.splits.items()} == {"train": 3, "val": 2, "test8": 2, "test6": 2, "test1": 2,
                                                               "val6": 2, "val1": 2}
    # the validation 6s and 1s are the validation file's (its 6s and 1s: rows 3, 4 and 6, 7), not the test file's
    val = load_affnist_mat(root / "validation.mat")[0]
    torch.testing.assert_close(sets.splits["val6"], val[[3, 6]])
    torch.testing.assert_close(sets.splits["val1"], val[[4, 7]])
    assert sets.target.shape == (1, 1, 40, 40)
    with pytest.raises(ValueError, match="affNIST files are missing"):
        load_digit_sets(tmp_path / "nothing", source="mat")


# ----------------------------------------------------------------------------- STN task
def test_stn_starts_at_identity_and_reports_metrics():
    task = STNTask(fake_sets(), seed=5, batch_size=4)
    params, buffers = task.init_params(5)
    x = task.data.splits["val"]
    torch.testing.assert_close(task.forward(params, buffers, x)[0], x, atol=1e-5, rtol=0)
    m = task.evaluate(params, buffers, "test1")
    assert set(m) == {"loss", "ssim", "mass_ratio"}
    assert m["mass_ratio"] == pytest.approx(1.0, abs=1e-4) and m["loss"] == pytest.approx(1 - m["ssim"])
    assert task.eval_splits == ("train", "val", "test8", "test1")
    assert task.validation_splits == ("val", "val1")
    img = task.visualize(params, buffers, n=3)
    assert img.shape[0] == 3 and img.min() >= 0 and img.max() <= 1


def test_stn_mass_ratio_catches_a_shrunk_digit():
    task = STNTask(fake_sets(), seed=0)
    params, buffers = task.init_params(0)
    params["fc2.bias"] = torch.tensor([3.0, 0, 0, 0, 3.0, 0])  # output samples 3x the extent: digit shrinks 3x
    assert task.evaluate(params, buffers, "val")["mass_ratio"] < 0.3


@needs_data("MNIST")
def test_validation_sets_of_the_other_test_digits_are_generated_from_mnist_training_images():
    from l2l_torch.affnist import _mnist

    sets = load_digit_sets(SHARED_DATA, n_train=16, n_val=4, n_test=4, target_index=13)
    assert {k: v.shape[0] for k, v in sets.splits.items()} == {"train": 16, "val": 4, "test8": 4, "test6": 4,
                                                               "test1": 4, "val6": 4, "val1": 4}
    tr_x, tr_y = _mnist(SHARED_DATA, "train")
    te_x, te_y = _mnist(SHARED_DATA, "test")
    for d in (6, 1):  # the first training images of the digit, under their own transforms; no test image
        torch.testing.assert_close(sets.splits[f"val{d}"], affnist_transform(tr_x[tr_y == d][:4], 200 + d)[0])
        assert not (sets.splits[f"val{d}"] - affnist_transform(te_x[te_y == d][:4], 200 + d)[0]).abs().amax() < 1e-6
    assert STNTask(sets).validation_splits == ("val", "val6", "val1")


@needs_data("MNIST")
def test_aux_digits_come_from_training_images_and_must_not_be_test_digits():
    base = load_digit_sets(SHARED_DATA, n_train=16, n_val=4, n_test=4, target_index=13)
    sets = load_digit_sets(SHARED_DATA, n_train=16, n_val=4, n_test=4, target_index=13, aux_digits=(0, 7),
                           n_aux=5, n_aux_val=3)
    assert base.aux is None and sets.aux.shape == (2, 5, 1, 40, 40) and sets.aux_val.shape == (2, 3, 1, 40, 40)
    for k, v in base.splits.items():  # the other digits change none of the experiment's own images
        torch.testing.assert_close(sets.splits[k], v)
    assert float(sets.aux.amax(dim=(2, 3, 4)).min()) > 0.5  # every image holds a digit
    with pytest.raises(ValueError, match="tune on the test digits"):
        load_digit_sets(SHARED_DATA, test_digits=(8, 6, 1), aux_digits=(0, 1))


def test_stn_unroll_meta_gradient():
    smoke_unroll(LSTMOptimizer(output_scale=0.01), STNTask(fake_sets(), seed=0, batch_size=4))


@needs_data("MNIST")
def test_affnist_fast_dev_run(tmp_path):
    out = smoke_train("affnist", tmp_path, "--data.init_args.data_dir", str(SHARED_DATA),
                      "--data.init_args.n_train", "16", "--data.init_args.n_val", "4", "--data.init_args.n_test", "4")
    assert (out / "optimizer.pt").is_file()


@needs_data("MNIST")
def test_stn_family_loads_through_its_datamodule():
    """Built on its own, the family makes an AffNISTDataModule from its arguments and loads through it, lazily;
    an attached DataModule's settings and its own merge, and a conflict is one DataError."""
    from l2l_torch.affnist import AffNISTDataModule
    from l2l_torch.data import DataError

    family = STNFamily(data_dir=str(SHARED_DATA), n_train=16, n_val=4, n_test=4)
    assert family.datamodule is None  # nothing loaded when built
    assert "generated from MNIST" in family.data_source
    task = family.sample(0)
    dm = family.datamodule
    assert isinstance(dm, AffNISTDataModule) and dm.loaded_on == torch.device("cpu")
    assert task.data.splits["train"] is dm.data.splits["train"] and dm.data.splits["train"].shape[0] == 16
    attached = STNFamily(n_val=4).attach(AffNISTDataModule(data_dir=str(SHARED_DATA), n_train=16, n_test=4))
    assert (attached.n_train, attached.n_val, attached.n_test) == (16, 4, 4)  # each side's own settings apply
    assert attached.datamodule.n_val == 4 and attached.sample(1).data.splits["val"].shape[0] == 4
    with pytest.raises(DataError, match="n_train=32 but data: sets n_train=16"):
        STNFamily(n_train=32).attach(AffNISTDataModule(n_train=16))
    with pytest.raises(DataError, match="6000 requested"):  # checked by prepare_data, before any training
        STNFamily(data_dir=str(SHARED_DATA), n_train=5786).prepare_data()


def test_stn_grid_callback_logs_every_digit_set_and_the_update_sizes(monkeypatch):
    """LogSTNGrid after a validation: the grid, SSIM and mass ratio of each validation digit set (never a test
    set), and a histogram of the learned optimizer's update sizes counting every coordinate of every step."""
    from types import SimpleNamespace

    from l2l_torch.callbacks import LogSTNGrid

    shown = []
    visualize = STNTask.visualize
    monkeypatch.setattr(STNTask, "visualize", lambda self, *a, splits=None, **kw: shown.append(splits) or
                        visualize(self, *a, splits=splits, **kw))

    class Experiment:
        def __init__(self):
            self.images, self.scalars, self.histograms = {}, {}, {}

        def add_image(self, tag, img, global_step):
            self.images[tag] = img

        def add_scalar(self, tag, value, global_step):
            self.scalars[tag] = value

        def add_histogram_raw(self, tag, global_step, **kw):
            self.histograms[tag] = kw

    sets = fake_sets()
    family = SimpleNamespace(sample=lambda seed: STNTask(sets, seed=seed, batch_size=4))
    module = SimpleNamespace(hparams={"val_seed": 0, "val_horizon": 3}, task=family,
                             lopt=LSTMOptimizer(hidden_size=4, output_scale=0.01), truncation=None)
    exp = Experiment()
    trainer = SimpleNamespace(sanity_checking=False, is_global_zero=True, global_step=5,
                              loggers=[SimpleNamespace(experiment=exp)])
    LogSTNGrid(n=3).on_validation_end(trainer, module)
    assert exp.images["val/stn_grid"].shape[0] == 3
    for split in ("train", "val", "val1"):
        for metric in ("ssim", "mass_ratio"):
            assert f"val/stn/{split}_{metric}" in exp.scalars
    assert not [tag for tag in exp.scalars if "test" in tag]  # never the digits that evaluate.py scores
    assert shown == [("val", "val1")]  # the grid shows the validation digits too
    numel = sum(p.numel() for p in STNTask(sets, seed=0).init_params(0)[0].values())
    h = exp.histograms["val/stn_log10_update"]
    assert 0 < h["num"] <= 3 * numel and sum(h["bucket_counts"]) == h["num"]
    assert h["min"] < h["max"] and len(h["bucket_limits"]) == len(h["bucket_counts"])
    # without val_horizon, the instance trains for its own horizon, as validation trains it
    from l2l_torch.tasks.base import VAL_SEED_OFFSET

    asked = []
    module.hparams, module.truncation = {"val_seed": 0}, SimpleNamespace(horizon_of=lambda seed: asked.append(seed) or 2)
    LogSTNGrid(n=3).on_validation_end(trainer, module)
    assert asked == [VAL_SEED_OFFSET] and exp.histograms["val/stn_log10_update"]["num"] <= 2 * numel


def test_stn_instances_of_one_family_share_a_loss_signature_and_pes_batches_them():
    from l2l_torch.estimators.pes import antithetic_pair, pes_estimate
    from l2l_torch.unroll import init_unroll
    from l2l_torch.vmap_unroll import obstacle

    sets = fake_sets()
    a, b = STNTask(sets, seed=1, batch_size=4), STNTask(sets, seed=2, batch_size=4)
    assert a.loss_signature() == b.loss_signature()
    assert STNTask(sets, seed=1, ssim_scale=1).loss_signature() != a.loss_signature()
    assert STNTask(fake_sets(), seed=1).loss_signature() != a.loss_signature()  # another target image
    lopt = LSTMOptimizer(hidden_size=4, output_scale=0.01)
    grads = []
    for batched in (False, True):
        pairs = [antithetic_pair(init_unroll(lopt, t, t.seed)) for t in (a, b)]
        assert obstacle(lopt, [p for pair in pairs for p in pair]) is None
        torch.manual_seed(0)
        xi = [torch.zeros(sum(p.numel() for p in lopt.parameters()))] * 2
        grads.append(pes_estimate(lopt, pairs, xi, 3, 0.01, batched=batched).grad)
    # PES divides loss differences by 2 sigma^2: float32 rounding of the conv kernels shows up at ~1e-5 of the scale
    scale = float(grads[0].abs().max())
    assert scale > 0
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=1e-3 * scale)
