"""DataModules on tiny slices of the shared datasets, the image-folder cache and the data errors."""

from __future__ import annotations

import gzip

import pytest
import torch

from l2l_torch import data
from l2l_torch.data import (
    CIFAR10DataModule,
    DataError,
    FashionMNISTDataModule,
    ImageDataModule,
    MNISTDataModule,
    decode_image_folder,
    load_image_dataset,
)
from tests.helpers import SHARED_DATA, needs_data, write_jpeg_folder

needs_shared = needs_data("FashionMNIST", "MNIST")


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    # a private cache per test session and no downloads: tests never touch the network
    monkeypatch.setenv("L2L_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "l2l_cache"))
    monkeypatch.setenv("L2L_OFFLINE", "1")
    monkeypatch.delenv("L2L_DATA_DIR", raising=False)
    # and empty per-process dataset caches, so earlier tests' loads do not hide this test's disk work
    monkeypatch.setattr(data, "_RAW", {})
    monkeypatch.setattr(data, "_PREPARED", {})


@needs_shared
@pytest.mark.parametrize("cls,name", [(FashionMNISTDataModule, "fashion_mnist"), (MNISTDataModule, "mnist")])
def test_mnist_style_datamodule_on_a_slice(cls, name):
    dm = cls(data_dir=str(SHARED_DATA), subset=200)
    dm.prepare_data()
    assert not dm.tensors and dm.loaded_on is None  # prepare_data only checks the files
    dm.setup("fit")
    assert dm.loaded_on == torch.device("cpu") and name.replace("_", "").lower() in dm.data_source.lower()
    (xt, yt), (xv, _), (xs, _) = dm.tensors["train"], dm.tensors["val"], dm.tensors["test"]
    assert xt.shape == (180, 1, 28, 28) and xv.shape == (20, 1, 28, 28) and xs.shape == (200, 1, 28, 28)
    assert xt.dtype == torch.float32 and yt.dtype == torch.long and int(yt.max()) <= 9
    # normalized with the dataset's statistics: roughly zero mean, unit variance
    assert abs(float(xt.mean())) < 0.3 and 0.7 < float(xt.std()) < 1.3
    assert data.cache_dir().is_dir() and not any(p.suffix == ".tmp" for p in data.cache_dir().rglob("*"))


@needs_shared
def test_split_is_seeded_and_disjoint():
    a = ImageDataModule("fashion_mnist", data_dir=str(SHARED_DATA), subset=300, split_seed=1)
    b = ImageDataModule("fashion_mnist", data_dir=str(SHARED_DATA), subset=300, split_seed=2)
    a.setup(), b.setup()
    assert not torch.equal(a.tensors["val"][0], b.tensors["val"][0])
    train = a.tensors["train"][0].flatten(1)
    val = a.tensors["val"][0].flatten(1)
    assert not (torch.cdist(val, train).min(dim=1).values == 0).any()  # no image in both splits


@needs_shared
def test_load_image_dataset_for_other_code():
    x, y = load_image_dataset("mnist", SHARED_DATA, "test")
    assert x.shape == (10000, 1, 28, 28) and y.shape == (10000,)
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    x2, _ = load_image_dataset("mnist", SHARED_DATA, "test")
    assert x2.data_ptr() != x.data_ptr() and torch.equal(x, x2)  # a fresh float copy of the cached uint8


def test_data_dir_from_environment(monkeypatch):
    monkeypatch.setenv("L2L_DATA_DIR", str(SHARED_DATA))
    assert data.resolve_data_dir() == SHARED_DATA
    assert data.resolve_data_dir("elsewhere").name == "elsewhere"


def test_missing_data_gives_one_sentence(tmp_path, monkeypatch):
    monkeypatch.setenv("L2L_CACHE_DIR", str(tmp_path / "empty_cache"))  # nothing extracted earlier either
    with pytest.raises(DataError) as e:
        data.load_raw("fashion_mnist", tmp_path / "nothing", "train")
    msg = str(e.value)
    assert isinstance(e.value, ValueError) and "\n" not in msg
    assert str(tmp_path / "nothing" / "FashionMNIST" / "raw") in msg and "train-images-idx3-ubyte.gz" in msg


def test_missing_cifar_folder(tmp_path):
    with pytest.raises(DataError, match="CIFAR-10-images"):
        data.load_raw("cifar10", tmp_path, "test", source="folder")
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        data.load_raw("cifar10", tmp_path, "test", source="torchvision")


def test_damaged_file_gives_one_sentence(tmp_path, monkeypatch):
    monkeypatch.setenv("L2L_CACHE_DIR", str(tmp_path / "cache"))
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for fn in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
               "t10k-labels-idx1-ubyte.gz"]:
        with gzip.open(raw / fn, "wb") as f:
            f.write(b"\0" * 100)  # right names, wrong content
    with pytest.raises(DataError, match="damaged") as e:
        data.load_raw("mnist", tmp_path, "train")
    assert "\n" not in str(e.value)


def test_truncated_extracted_file(tmp_path, monkeypatch):
    monkeypatch.setenv("L2L_CACHE_DIR", str(tmp_path / "cache"))
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for fn in ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte"]:
        (raw / fn).write_bytes(b"\0\0\x08\x03" + b"\0" * 12)
    with pytest.raises(DataError):
        data.load_raw("mnist", tmp_path, "test")


def test_image_folder_source_decodes_once(tmp_path):
    write_jpeg_folder(tmp_path / "CIFAR-10-images", {"train": 3, "test": 1})
    dm = CIFAR10DataModule(data_dir=str(tmp_path), source="folder")
    dm.setup()
    assert dm.tensors["train"][0].shape == (27, 3, 32, 32) and dm.tensors["val"][0].shape == (3, 3, 32, 32)
    assert dm.tensors["test"][0].shape == (10, 3, 32, 32)
    assert sorted(dm.tensors["test"][1].tolist()) == list(range(10))  # class folders -> label ids
    cached = list(data.cache_dir().glob("cifar10-folder-test-*.pt"))
    assert len(cached) >= 1
    # a second decode reads the cache: same tensors, no image opened
    imgs, labels, classes = decode_image_folder((tmp_path / "CIFAR-10-images" / "test").resolve(), cached[0])
    assert imgs.dtype == torch.uint8 and imgs.shape == (10, 3, 32, 32) and classes[0] == "airplane"


def test_image_folder_with_mixed_sizes(tmp_path):
    write_jpeg_folder(tmp_path / "a", {"x": 1}, size=32)
    write_jpeg_folder(tmp_path / "b", {"x": 1}, size=16)
    (tmp_path / "a" / "x" / "cat" / "0001.jpg").write_bytes((tmp_path / "b" / "x" / "cat" / "0000.jpg").read_bytes())
    with pytest.raises(DataError, match="different sizes"):
        decode_image_folder(tmp_path / "a" / "x")


def test_bad_arguments():
    with pytest.raises(DataError, match="unknown dataset"):
        ImageDataModule("imagenet")
    with pytest.raises(ValueError, match="val_fraction"):
        ImageDataModule("mnist", val_fraction=1.5)


@needs_shared
def test_image_family_loads_through_its_datamodule():
    """One loading path: a family built on its own makes an ImageDataModule from its arguments, lazily; one given a
    DataModule (train.py's data: section) uses that one's tensors; another dataset is one DataError."""
    from l2l_torch.tasks.image_classification import ImageClassificationFamily

    own = ImageClassificationFamily(dataset="mnist", data_dir=str(SHARED_DATA), subset=100)
    assert own.datamodule is None  # nothing read when built
    own.prepare_data()
    task = own.sample(0)
    assert isinstance(own.datamodule, ImageDataModule) and own.datamodule.name == "mnist"
    assert task.data["train"][0] is own.datamodule.tensors["train"][0]
    dm = FashionMNISTDataModule(data_dir=str(SHARED_DATA), subset=100)
    fam = ImageClassificationFamily(dataset="fashion_mnist", subset=100).attach(dm)
    assert fam.sample(1).data["val"][0] is dm.tensors["val"][0] and dm.loaded_on == fam.device
    assert fam.data_dir == str(SHARED_DATA)  # the data: section's settings apply to the family
    with pytest.raises(DataError, match="trains on mnist but data: holds fashion_mnist"):
        ImageClassificationFamily(dataset="mnist").attach(dm)
    with pytest.raises(DataError, match="subset=50 but data: sets subset=100"):
        ImageClassificationFamily(subset=50).attach(FashionMNISTDataModule(subset=100))
