"""Image datasets held as tensors on the training device (Fashion-MNIST, MNIST, CIFAR-10).

Each dataset is a LightningDataModule (:class:`FashionMNISTDataModule`, :class:`MNISTDataModule`,
:class:`CIFAR10DataModule`; affNIST: :class:`l2l_torch.affnist.AffNISTDataModule`): ``prepare_data()``
finds, extracts or downloads the files once, ``setup()`` puts the tensors on the training device. A task
family takes its data from one (``family.attach(datamodule)``, which ``train.py`` does with the config's
``data:`` section) or, built on its own, makes one from its arguments: one loading path either way.
The task instances draw batches by indexing the device tensors (no per-batch ``DataLoader`` in the
meta-training hot loop).

A dataset is read ONCE per process into ``uint8`` tensors ``(N, C, H, W)``; an :class:`ImageDataModule`
turns that into normalized float tensors on its device with a seeded 90/10 train/validation split and the
official test set.

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

Errors the user can fix (files missing offline, a truncated file) raise :class:`DataError` with one
sentence; the command-line tools print it as one line and exit 2.
"""

from __future__ import annotations

import gzip
import hashlib
import inspect
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor

SPLITS = ("train", "val", "test")
SOURCES = ("auto", "torchvision", "folder")


class DataError(ValueError):
    """A dataset cannot be found, downloaded or read, or a data setting is wrong; the message (one sentence)
    says which files and where, or which setting."""


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


# ---------------------------------------------------------------------- DataModules
def _default(cls: type, name: str) -> Any:
    """The default of ``cls``'s init argument ``name`` (from the first class in its MRO that declares it)."""
    for c in cls.__mro__:
        init = c.__dict__.get("__init__")
        if init is not None:
            params = inspect.signature(init).parameters
            if name in params:
                return params[name].default
    return inspect.Parameter.empty


def _same(a: Any, b: Any) -> bool:
    def norm(v: Any) -> Any:
        return tuple(norm(x) for x in v) if isinstance(v, (list, tuple)) else str(v) if isinstance(v, os.PathLike) else v

    return norm(a) == norm(b)


class TensorDataModule(L.LightningDataModule):
    """A dataset as tensors on one device; the base of the dataset DataModules.

    :meth:`prepare_data` makes sure the files are there (found, extracted or downloaded), once per
    instance; :meth:`setup` loads the tensors onto :meth:`target_device` (again after :meth:`to` moves
    it). A task family used without a trainer calls :meth:`load`, which does both. Subclasses implement
    ``_prepare()``, ``_load(device)`` and :attr:`data_source`.

    Args:
        device: where the tensors live; default: the trainer's device when attached, else CPU.
    """

    def __init__(self, device: str | None = None) -> None:
        super().__init__()
        self.device = torch.device(device) if device else None
        self.prepared = False
        #: the device the tensors were last loaded onto (None: not loaded yet)
        self.loaded_on: torch.device | None = None

    def _prepare(self) -> None:
        raise NotImplementedError

    def _load(self, device: torch.device) -> None:
        raise NotImplementedError

    @property
    def data_source(self) -> str:
        """Which data, from where (one line, for the run's log)."""
        raise NotImplementedError

    def target_device(self) -> torch.device:
        if self.device is not None:
            return self.device
        trainer = getattr(self, "trainer", None)  # set when a Trainer runs with this DataModule
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def prepare_data(self) -> None:
        if not self.prepared:
            self._prepare()  # raises DataError when the files are missing
            self.prepared = True

    def setup(self, stage: str | None = None) -> None:
        device = self.target_device()
        if self.loaded_on != device:
            self._load(device)
            self.loaded_on = device

    def to(self, device: torch.device | str) -> TensorDataModule:
        """Keep the tensors on ``device`` from now on (moved now if already loaded)."""
        self.device = torch.device(device)
        if self.loaded_on is not None:
            self.setup()
        return self

    def load(self, device: torch.device | str | None = None) -> TensorDataModule:
        """:meth:`prepare_data` and :meth:`setup` (on ``device`` when given); a no-op when already done."""
        if device is not None:
            self.device = torch.device(device)
        self.prepare_data()
        self.setup("fit")
        return self

    def adopt(self, owner: Any, keys: dict[str, str]) -> None:
        """Reconcile the data settings of ``owner`` (a task family) with this DataModule's, in place.

        ``keys`` maps the owner's attribute names to this DataModule's. A setting left at its default on one
        side takes the other side's value; one set differently on both sides is a :class:`DataError`.
        """
        for mine, theirs in keys.items():
            a, b = getattr(owner, mine), getattr(self, theirs)
            if _same(a, b):
                continue
            if _same(a, _default(type(owner), mine)):
                setattr(owner, mine, b)
            elif _same(b, _default(type(self), theirs)) and self.loaded_on is None:
                setattr(self, theirs, a)
            else:
                raise DataError(f"model.task sets {mine}={a!r} but data: sets {theirs}={b!r}; set it in one place")


class ImageDataModule(TensorDataModule):
    """A classification dataset as normalized float tensors on one device.

    After :meth:`setup`, ``self.tensors[split] = (x, y)`` for ``split`` in ``train``, ``val``,
    ``test``: ``x`` float ``(N, C, H, W)`` normalized per channel, ``y`` long ``(N,)``.
    ``val`` is a seeded random ``val_fraction`` of the official training set. The tensors are built
    once per process and argument set, so families sampling many task instances share them.

    Args:
        name: ``"fashion_mnist"``, ``"mnist"`` or ``"cifar10"``.
        data_dir: dataset root (default ``$L2L_DATA_DIR``, else ``./data``).
        source: CIFAR-10 only: ``"auto"``, ``"torchvision"`` or ``"folder"`` (see the module doc).
        val_fraction: share of the official training set held out for validation.
        split_seed: seed of the train/validation split.
        subset: keep only this many training and test images (quick tests); None keeps all.
        device: where the tensors live; default: the trainer's device when attached, else CPU.

    Example:
        >>> dm = ImageDataModule("fashion_mnist", subset=1000)  # doctest: +SKIP
        >>> dm.prepare_data(); dm.setup()
        >>> dm.tensors["train"][0].shape
        torch.Size([900, 1, 28, 28])
    """

    def __init__(self, name: str = "fashion_mnist", data_dir: str | None = None, source: str = "auto",
                 val_fraction: float = 0.1, split_seed: int = 0, subset: int | None = None,
                 device: str | None = None) -> None:
        super().__init__(device)
        self.info = _info(name)
        if not 0.0 < val_fraction < 1.0:
            raise DataError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if source not in SOURCES:
            raise DataError(f"source must be one of {SOURCES}, got {source!r}")
        self.name, self.data_dir, self.source = name, data_dir, source
        self.val_fraction, self.split_seed, self.subset = val_fraction, split_seed, subset
        self.tensors: dict[str, tuple[Tensor, Tensor]] = {}

    @property
    def data_source(self) -> str:
        return (f"{self.info.tv_class} from {resolve_data_dir(self.data_dir)}"
                + (f" (source {self.source})" if self.name == "cifar10" else "")
                + (f", first {self.subset} images" if self.subset is not None else ""))

    def _prepare(self) -> None:
        for split in ("train", "test"):
            load_raw(self.name, self.data_dir, split, self.source)

    def _load(self, device: torch.device) -> None:
        key = (self.name, str(resolve_data_dir(self.data_dir).resolve()), self.source, self.val_fraction,
               self.split_seed, self.subset, str(device))
        if key not in _PREPARED:
            _PREPARED[key] = self._normalized(device)
        self.tensors = _PREPARED[key]

    def _normalized(self, device: torch.device) -> dict[str, tuple[Tensor, Tensor]]:
        mean = torch.tensor(self.info.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.info.std).view(1, -1, 1, 1)

        def norm(images: Tensor) -> Tensor:
            return ((images.float() / 255.0 - mean) / std).to(device)

        train_x, train_y = load_raw(self.name, self.data_dir, "train", self.source)
        test_x, test_y = load_raw(self.name, self.data_dir, "test", self.source)
        perm = torch.randperm(train_x.shape[0], generator=torch.Generator().manual_seed(self.split_seed))
        if self.subset is not None:
            perm = perm[:self.subset]
            test_x, test_y = test_x[:self.subset], test_y[:self.subset]
        n_val = max(1, int(round(self.val_fraction * perm.numel())))
        val_idx, train_idx = perm[:n_val], perm[n_val:]
        return {"train": (norm(train_x[train_idx]), train_y[train_idx].to(device)),
                "val": (norm(train_x[val_idx]), train_y[val_idx].to(device)),
                "test": (norm(test_x), test_y.to(device))}


#: normalized tensors per (dataset, folder, source, split, subset, device): shared by every DataModule of a process
_PREPARED: dict[tuple, dict[str, tuple[Tensor, Tensor]]] = {}


class FashionMNISTDataModule(ImageDataModule):
    """Fashion-MNIST (60k train, 10k test, 1x28x28). Args as :class:`ImageDataModule`, without ``name``."""

    def __init__(self, data_dir: str | None = None, val_fraction: float = 0.1, split_seed: int = 0,
                 subset: int | None = None, device: str | None = None) -> None:
        super().__init__("fashion_mnist", data_dir, "auto", val_fraction, split_seed, subset, device)


class MNISTDataModule(ImageDataModule):
    """MNIST (60k train, 10k test, 1x28x28). Args as :class:`ImageDataModule`, without ``name``."""

    def __init__(self, data_dir: str | None = None, val_fraction: float = 0.1, split_seed: int = 0,
                 subset: int | None = None, device: str | None = None) -> None:
        super().__init__("mnist", data_dir, "auto", val_fraction, split_seed, subset, device)


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10 (50k train, 10k test, 3x32x32), official or image-folder ``source``. Args as
    :class:`ImageDataModule`, without ``name``."""

    def __init__(self, data_dir: str | None = None, source: str = "auto", val_fraction: float = 0.1,
                 split_seed: int = 0, subset: int | None = None, device: str | None = None) -> None:
        super().__init__("cifar10", data_dir, source, val_fraction, split_seed, subset, device)
