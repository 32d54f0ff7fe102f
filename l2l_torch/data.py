"""Image datasets held as tensors on the training device (Fashion-MNIST, MNIST, CIFAR-10).

A dataset is read ONCE per process into ``uint8`` tensors ``(N, C, H, W)``; a
:class:`ImageDataModule` turns that into normalized float tensors on its device with a seeded
90/10 train/validation split and the official test set, and draws batches by indexing on the
device (no per-batch ``DataLoader`` in the meta-training hot loop).

Where the files come from (``data_dir``: the argument, else ``$L2L_DATA_DIR``, else ``./data``):

* MNIST / Fashion-MNIST: torchvision's layout ``data_dir/<MNIST|FashionMNIST>/raw/*.gz``. The
  ``.gz`` files are md5-checked and extracted into a writable cache (``$L2L_CACHE_DIR``, else
  ``~/.cache/l2l_torch``), so ``data_dir`` may be read-only. Missing files are downloaded by
  torchvision when the network allows.
* CIFAR-10, ``source="torchvision"``: the official python batches (``cifar-10-batches-py``),
  downloaded when missing. ``source="folder"``: any ``ImageFolder`` tree
  ``data_dir/CIFAR-10-images/{train,test}/<class>/*.jpg``, decoded once into a cached ``uint8``
  tensor file so later runs load in seconds. ``source="auto"``: the official files if present,
  else the image folder, else a download.

Set ``L2L_OFFLINE=1`` to never try a download (tests, air-gapped machines).

Errors the user can fix (files missing offline, a truncated file) raise :class:`DataError`, a
:class:`l2l_torch.cli.UserError`, so the command-line tools print one sentence and exit 2.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from l2l_torch.cli import UserError

SPLITS = ("train", "val", "test")
SOURCES = ("auto", "torchvision", "folder")


class DataError(UserError):
    """A dataset cannot be found, downloaded or read; the message says which files and where."""


@dataclass(frozen=True)
class DatasetInfo:
    """What differs between datasets: torchvision class, folders, shape and normalization."""

    tv_class: str  #: torchvision.datasets class name
    folder: str  #: MNIST-style raw folder, or the image-folder copy (CIFAR)
    shape: tuple[int, int, int]  #: (C, H, W)
    mean: tuple[float, ...]  #: per channel, of the training images scaled to [0, 1]
    std: tuple[float, ...]
    num_classes: int = 10


DATASETS: dict[str, DatasetInfo] = {
    "fashion_mnist": DatasetInfo("FashionMNIST", "FashionMNIST", (1, 28, 28), (0.2860,), (0.3530,)),
    "mnist": DatasetInfo("MNIST", "MNIST", (1, 28, 28), (0.1307,), (0.3081,)),
    "cifar10": DatasetInfo("CIFAR10", "CIFAR-10-images", (3, 32, 32), (0.4914, 0.4822, 0.4465),
                           (0.2470, 0.2435, 0.2616)),
}


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """``data_dir``, else ``$L2L_DATA_DIR``, else ``./data``."""
    return Path(data_dir or os.environ.get("L2L_DATA_DIR") or "data").expanduser()


def cache_dir() -> Path:
    """Writable cache for extracted and decoded files: ``$L2L_CACHE_DIR``, else ``~/.cache/l2l_torch``."""
    return Path(os.environ.get("L2L_CACHE_DIR") or Path.home() / ".cache" / "l2l_torch").expanduser()


def offline() -> bool:
    """True when ``$L2L_OFFLINE`` is set (to anything but ``0``): never try to download."""
    return os.environ.get("L2L_OFFLINE", "0") not in ("", "0")


def _info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        return os.access(path, os.W_OK)
    except OSError:
        return False


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------- MNIST-style files
def _mnist_root(info: DatasetInfo, data_dir: Path) -> Path:
    """A root folder where torchvision finds the extracted files (``root/<folder>/raw/*-ubyte``).

    Order: ``data_dir`` if already extracted there; the cache; the ``.gz`` files of ``data_dir``
    md5-checked and extracted into the cache; a torchvision download.
    """
    import torchvision.datasets as tvd

    cls = getattr(tvd, info.tv_class)
    gz_files = [(fn, md5) for fn, md5 in cls.resources]
    extracted = [fn[:-3] for fn, _ in gz_files]
    cache = cache_dir()
    for root in (data_dir, cache):
        if all((root / info.folder / "raw" / f).is_file() for f in extracted):
            return root
    src = data_dir / info.folder / "raw"
    if all((src / fn).is_file() for fn, _ in gz_files):
        dst = cache / info.folder / "raw"
        if not _writable(dst):
            raise DataError(f"cannot write the extracted {info.tv_class} files to the cache {dst}; "
                            "set L2L_CACHE_DIR to a writable folder")
        for fn, md5 in gz_files:
            got = _md5(src / fn)
            if got != md5:
                raise DataError(f"{src / fn} is damaged ({(src / fn).stat().st_size} bytes, md5 {got}, "
                                f"expected md5 {md5}); replace it or delete it to download again")
            tmp = dst / (fn[:-3] + ".tmp")
            with gzip.open(src / fn, "rb") as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout)
            tmp.replace(dst / fn[:-3])
        return cache
    expected = f"{info.tv_class} not found in {src} (expected {', '.join(fn for fn, _ in gz_files)})"
    if offline():
        raise DataError(f"{expected} and downloads are off (L2L_OFFLINE is set)")
    root = data_dir if _writable(data_dir) else cache
    try:
        cls(root=str(root), train=True, download=True)
        return root
    except Exception as e:  # offline (URLError), a mirror down, a bad partial file, ...
        raise DataError(f"{expected} and the download failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                        ) from None


def _load_mnist(info: DatasetInfo, data_dir: Path, split: str) -> tuple[Tensor, Tensor]:
    import torchvision.datasets as tvd

    root = _mnist_root(info, data_dir)
    try:
        ds = getattr(tvd, info.tv_class)(root=str(root), train=split == "train", download=False)
        images, labels = ds.data, ds.targets
    except Exception as e:
        raise DataError(f"cannot read {info.tv_class} from {root / info.folder / 'raw'} ({type(e).__name__}: {e}); "
                        "the files may be truncated: delete them to extract or download again") from None
    n = 60000 if split == "train" else 10000
    if images.shape != (n, *info.shape[1:]) or labels.shape != (n,):
        raise DataError(f"{info.tv_class} {split} files in {root / info.folder / 'raw'} hold {tuple(images.shape)} "
                        f"images, expected {(n, *info.shape[1:])}; delete them to extract or download again")
    return images.unsqueeze(1), labels.long()


# ---------------------------------------------------------------------- CIFAR-10
def _load_cifar_official(data_dir: Path, split: str, download: bool) -> tuple[Tensor, Tensor]:
    import torchvision.datasets as tvd

    for root in (data_dir, cache_dir()):
        if (root / tvd.CIFAR10.base_folder).is_dir():
            break
    else:
        if not download:
            raise FileNotFoundError
        if offline():
            raise DataError(f"CIFAR-10 not found in {data_dir / tvd.CIFAR10.base_folder} (expected data_batch_1..5 "
                            "and test_batch) and downloads are off (L2L_OFFLINE is set); for the JPEG copy use "
                            "source: folder")
        root = data_dir if _writable(data_dir) else cache_dir()
    try:
        ds = tvd.CIFAR10(root=str(root), train=split == "train", download=download)
    except Exception as e:
        raise DataError(f"CIFAR-10 not found in {root / tvd.CIFAR10.base_folder} (expected data_batch_1..5 and "
                        f"test_batch) and the download failed ({type(e).__name__}); for the JPEG copy use "
                        "source: folder") from None
    return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets, dtype=torch.long)


def decode_image_folder(folder: Path, cache_file: Path | None = None) -> tuple[Tensor, Tensor, list[str]]:
    """Decode an ``ImageFolder`` tree ``folder/<class>/*`` once into ``uint8`` tensors.

    Args:
        folder: the root of the class folders (all images must have the same size).
        cache_file: where to keep the decoded tensors; reused while the number of files and
            the class list are unchanged.

    Returns:
        ``(images, labels, classes)``: ``(N, 3, H, W)`` uint8, ``(N,)`` long, class names in
        label order (alphabetical, as ``ImageFolder``).
    """
    import numpy as np
    from torchvision.datasets import ImageFolder

    try:
        ds = ImageFolder(str(folder))
    except (FileNotFoundError, OSError) as e:
        raise DataError(f"image folder {folder} is missing or empty (expected {folder}/<class>/*.jpg): "
                        f"{str(e).splitlines()[0]}") from None
    if cache_file is not None and cache_file.is_file():
        try:
            blob = torch.load(cache_file, weights_only=True)
            if blob["classes"] == ds.classes and blob["images"].shape[0] == len(ds.samples) == blob["labels"].shape[0]:
                return blob["images"], blob["labels"], ds.classes
        except Exception:
            pass  # a stale or damaged cache is rebuilt below
    images = []
    for path, _ in ds.samples:
        try:
            # ImageFolder's own loader (PIL, RGB): any format PIL reads
            images.append(torch.from_numpy(np.array(ds.loader(path))).permute(2, 0, 1))
        except Exception as e:
            raise DataError(f"cannot decode image {path} ({type(e).__name__})") from None
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) != 1:
        raise DataError(f"images in {folder} have different sizes {sorted(shapes)[:3]}; resize them first")
    out = torch.stack(images), torch.tensor(ds.targets, dtype=torch.long)
    if cache_file is not None and _writable(cache_file.parent):
        tmp = cache_file.with_suffix(".tmp")
        torch.save({"images": out[0], "labels": out[1], "classes": ds.classes}, tmp)
        tmp.replace(cache_file)
    return out[0], out[1], ds.classes


def _load_cifar_folder(info: DatasetInfo, data_dir: Path, split: str) -> tuple[Tensor, Tensor]:
    folder = (data_dir / info.folder / split).resolve()
    if not folder.is_dir():
        raise DataError(f"CIFAR-10 image folder {folder} not found (expected {data_dir / info.folder}/"
                        "{train,test}/<class>/*.jpg)")
    key = hashlib.md5(str(folder).encode()).hexdigest()[:10]
    images, labels, _ = decode_image_folder(folder, cache_dir() / f"cifar10-folder-{split}-{key}.pt")
    if tuple(images.shape[1:]) != info.shape:
        raise DataError(f"images in {folder} are {tuple(images.shape[1:])}, expected {info.shape}")
    return images, labels


# ---------------------------------------------------------------------- public loaders
_RAW: dict[tuple[str, str, str, str], tuple[Tensor, Tensor]] = {}


def load_raw(name: str, data_dir: str | os.PathLike | None = None, split: str = "train",
             source: str = "auto") -> tuple[Tensor, Tensor]:
    """The official ``split`` (``"train"`` or ``"test"``) as ``uint8`` images ``(N, C, H, W)`` and
    long labels ``(N,)`` on the CPU, read once per process."""
    info = _info(name)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    root = resolve_data_dir(data_dir)
    key = (name, str(root.resolve()), split, source)
    if key not in _RAW:
        if name != "cifar10":
            _RAW[key] = _load_mnist(info, root, split)
        elif source == "folder":
            _RAW[key] = _load_cifar_folder(info, root, split)
        elif source == "torchvision":
            _RAW[key] = _load_cifar_official(root, split, download=True)
        else:  # auto: official if present, else the image folder, else download the official files
            try:
                _RAW[key] = _load_cifar_official(root, split, download=False)
            except FileNotFoundError:
                if (root / info.folder / split).is_dir():
                    _RAW[key] = _load_cifar_folder(info, root, split)
                else:
                    _RAW[key] = _load_cifar_official(root, split, download=True)
    return _RAW[key]


def load_image_dataset(name: str, data_dir: str | os.PathLike | None = None, split: str = "train",
                       source: str = "auto") -> tuple[Tensor, Tensor]:
    """Images as float ``(N, C, H, W)`` in ``[0, 1]`` and labels long ``(N,)`` (CPU, not normalized).

    Example:
        >>> x, y = load_image_dataset("mnist", split="test")  # doctest: +SKIP
        >>> x.shape, y.shape
        (torch.Size([10000, 1, 28, 28]), torch.Size([10000]))
    """
    images, labels = load_raw(name, data_dir, split, source)
    return images.float().div_(255.0), labels


# ---------------------------------------------------------------------- DataModule
class ImageDataModule(L.LightningDataModule):
    """A classification dataset as normalized float tensors on one device.

    After :meth:`setup`, ``self.tensors[split] = (x, y)`` for ``split`` in ``train``, ``val``,
    ``test``: ``x`` float ``(N, C, H, W)`` normalized per channel, ``y`` long ``(N,)``.
    ``val`` is a seeded random ``val_fraction`` of the official training set.

    Args:
        name: ``"fashion_mnist"``, ``"mnist"`` or ``"cifar10"``.
        data_dir: dataset root (default ``$L2L_DATA_DIR``, else ``./data``).
        source: CIFAR-10 only: ``"auto"``, ``"torchvision"`` or ``"folder"`` (see the module doc).
        batch_size: batch size of :meth:`batch` and the dataloaders.
        val_fraction: share of the official training set held out for validation.
        split_seed: seed of the train/validation split.
        subset: keep only this many training and test images (quick tests); None keeps all.
        device: where the tensors live; default: the trainer's device when attached, else CPU.

    Example:
        >>> dm = ImageDataModule("fashion_mnist", subset=1000)  # doctest: +SKIP
        >>> dm.setup()
        >>> x, y = dm.batch("train", torch.Generator().manual_seed(0))
        >>> x.shape
        torch.Size([128, 1, 28, 28])
    """

    def __init__(self, name: str = "fashion_mnist", data_dir: str | None = None, source: str = "auto",
                 batch_size: int = 128, val_fraction: float = 0.1, split_seed: int = 0,
                 subset: int | None = None, device: str | None = None) -> None:
        super().__init__()
        self.info = _info(name)
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        self.name, self.data_dir, self.source = name, data_dir, source
        self.batch_size, self.val_fraction, self.split_seed, self.subset = batch_size, val_fraction, split_seed, subset
        self.device = torch.device(device) if device else None
        self.tensors: dict[str, tuple[Tensor, Tensor]] = {}

    def prepare_data(self) -> None:
        # files present (extracted, decoded or downloaded); raises DataError otherwise
        for split in ("train", "test"):
            load_raw(self.name, self.data_dir, split, self.source)

    def _device(self) -> torch.device:
        if self.device is not None:
            return self.device
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def setup(self, stage: str | None = None) -> None:
        if not self.tensors:
            self.tensors = prepared_tensors(self.name, self.data_dir, self.source, self.val_fraction,
                                            self.split_seed, self.subset, str(self._device()))

    def batch(self, split: str, generator: torch.Generator, batch_size: int | None = None) -> tuple[Tensor, Tensor]:
        """A random batch (with replacement) of ``split``, indexed on the device: ``((B, C, H, W), (B,))``."""
        x, y = self.tensors[split]
        idx = torch.randint(x.shape[0], (batch_size or self.batch_size,), generator=generator, device=x.device)
        return x[idx], y[idx]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(TensorDataset(*self.tensors[split]), batch_size=self.batch_size, shuffle=shuffle)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)


_PREPARED: dict[tuple, dict[str, tuple[Tensor, Tensor]]] = {}


def prepared_tensors(name: str, data_dir: str | None, source: str, val_fraction: float, split_seed: int,
                     subset: int | None, device: str) -> dict[str, tuple[Tensor, Tensor]]:
    """Normalized train/val/test tensors on ``device``, built once per process and argument set
    (a task family sampling many task instances shares them)."""
    key = (name, str(resolve_data_dir(data_dir).resolve()), source, val_fraction, split_seed, subset, device)
    if key in _PREPARED:
        return _PREPARED[key]
    info = _info(name)
    mean = torch.tensor(info.mean).view(1, -1, 1, 1)
    std = torch.tensor(info.std).view(1, -1, 1, 1)
    g = torch.Generator().manual_seed(split_seed)

    def norm(images: Tensor) -> Tensor:
        return ((images.float() / 255.0 - mean) / std).to(device)

    train_x, train_y = load_raw(name, data_dir, "train", source)
    test_x, test_y = load_raw(name, data_dir, "test", source)
    perm = torch.randperm(train_x.shape[0], generator=g)
    if subset is not None:
        perm = perm[:subset]
        test_x, test_y = test_x[:subset], test_y[:subset]
    n_val = max(1, int(round(val_fraction * perm.numel())))
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    out = {"train": (norm(train_x[train_idx]), train_y[train_idx].to(device)),
           "val": (norm(train_x[val_idx]), train_y[val_idx].to(device)),
           "test": (norm(test_x), test_y.to(device))}
    _PREPARED[key] = out
    return out


class FashionMNISTDataModule(ImageDataModule):
    """Fashion-MNIST (60k train, 10k test, 1x28x28). Args as :class:`ImageDataModule`."""

    def __init__(self, **kwargs) -> None:
        super().__init__("fashion_mnist", **kwargs)


class MNISTDataModule(ImageDataModule):
    """MNIST (60k train, 10k test, 1x28x28). Args as :class:`ImageDataModule`."""

    def __init__(self, **kwargs) -> None:
        super().__init__("mnist", **kwargs)


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10 (50k train, 10k test, 3x32x32), official or image-folder source. Args as :class:`ImageDataModule`."""

    def __init__(self, **kwargs) -> None:
        super().__init__("cifar10", **kwargs)
