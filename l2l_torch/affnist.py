"""affNIST data: the real ``.mat`` files when present, else affNIST-style digits generated from MNIST.

affNIST (Tieleman, 2013) is MNIST with every digit placed on a 40x40 canvas and transformed by a
random affine map: rotation within +-20 degrees, shear within +-0.2, horizontal and vertical scale
each within 0.8..1.2, and a random translation that keeps the whole digit inside the canvas. The
official files are MATLAB ``.mat`` files holding an ``affNISTdata`` struct with ``image``
(1600 x N uint8, one image per column, row-major 40x40), ``label_int`` (N,) and
``label_one_of_n`` (10 x N).

:func:`load_affnist_mat` reads such files; :func:`affnist_transform` makes the same kind of data
from any batch of 28x28 digits, vectorised and deterministic by seed. :func:`load_digit_sets`
picks whichever source is available and says which in :attr:`DigitSets.source`;
:class:`AffNISTDataModule` serves those sets to the STN task family as a LightningDataModule.

Example:
    >>> digits = torch.rand(4, 1, 28, 28)
    >>> out, theta = affnist_transform(digits, seed=0)
    >>> out.shape, theta.shape
    (torch.Size([4, 1, 40, 40]), torch.Size([4, 2, 3]))
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from l2l_torch.data import DataError, TensorDataModule, load_raw, resolve_data_dir

CANVAS = 40
#: the published affNIST ranges
MAX_ROTATION_DEG = 20.0
MAX_SHEAR = 0.2
SCALE_RANGE = (0.8, 1.2)
#: file names of the real dataset, per split (``<data_dir>/affNIST/<name>.mat`` or ``<name>_batches/*.mat``)
MAT_FILES = {"train": "training", "val": "validation", "test": "test"}


# ---------------------------------------------------------------------------------------- .mat files
def load_affnist_mat(path: str | os.PathLike) -> tuple[Tensor, Tensor]:
    """Read one affNIST ``.mat`` file.

    Args:
        path: a MATLAB file with an ``affNISTdata`` struct (``image``: 1600 x N uint8, ``label_int``).

    Returns:
        ``(images, labels)``: float images ``(N, 1, 40, 40)`` in ``[0, 1]`` and int64 labels ``(N,)``.
    """
    from scipy.io import loadmat

    try:
        data = loadmat(str(path), squeeze_me=True, struct_as_record=False)["affNISTdata"]
    except KeyError as e:
        raise ValueError(f"{path} has no 'affNISTdata' struct; is it an affNIST file?") from e
    image = torch.as_tensor(data.image).reshape(CANVAS * CANVAS, -1)  # squeeze_me drops N == 1
    labels = torch.as_tensor(data.label_int).reshape(-1).long()
    # one image per column, each column a row-major 40x40 image
    images = image.T.contiguous().reshape(-1, 1, CANVAS, CANVAS).float() / 255.0
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{path}: {images.shape[0]} images but {labels.shape[0]} labels")
    return images, labels


def find_affnist_files(data_dir: str | os.PathLike, split: str) -> list[Path]:
    """The ``.mat`` files of ``split`` under ``<data_dir>/affNIST`` (empty if there are none).

    Accepts ``affNIST/<name>.mat`` (one file per split) or ``affNIST/<name>_batches/*.mat`` (the
    official per-batch layout), where ``<name>`` is ``training``, ``validation`` or ``test``.
    """
    root = Path(data_dir) / "affNIST"
    name = MAT_FILES[split]
    if (root / f"{name}.mat").is_file():
        return [root / f"{name}.mat"]
    batches = root / f"{name}_batches"
    if batches.is_dir():
        return sorted(batches.glob("*.mat"), key=lambda p: (len(p.stem), p.stem))
    return []


# ---------------------------------------------------------------------------------------- generator
def random_affine_params(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Draw affNIST's random transformation parameters for ``n`` images.

    Returns:
        ``(angle_rad, shear, scale_x, scale_y)``, each ``(n,)``.
    """
    u = torch.rand(4, n, generator=generator, dtype=torch.float64)
    angle = (2 * u[0] - 1) * math.radians(MAX_ROTATION_DEG)
    shear = (2 * u[1] - 1) * MAX_SHEAR
    lo, hi = SCALE_RANGE
    return angle, shear, lo + (hi - lo) * u[2], lo + (hi - lo) * u[3]


def _bounding_boxes(images: Tensor, threshold: float) -> Tensor:
    """Per-image bounding box of pixels above ``threshold``: ``(N, 4)`` = (x_min, x_max, y_min, y_max)."""
    mask = images[:, 0] > threshold  # (N, H, W)
    h, w = mask.shape[-2:]
    cols, rows = mask.any(dim=1), mask.any(dim=2)  # (N, W), (N, H)
    x_min = cols.float().argmax(dim=1)
    x_max = w - 1 - cols.flip(1).float().argmax(dim=1)
    y_min = rows.float().argmax(dim=1)
    y_max = h - 1 - rows.flip(1).float().argmax(dim=1)
    return torch.stack([x_min, x_max, y_min, y_max], dim=1).double()


def affnist_transform(digits: Tensor, seed: int, canvas: int = CANVAS,
                      threshold: float = 0.05) -> tuple[Tensor, Tensor]:
    """Place 28x28 digits on a ``canvas``-sized canvas and apply affNIST's random affine transforms.

    The linear part is ``rotation @ shear @ diag(scale_x, scale_y)`` about the canvas centre; the
    translation is drawn uniformly among those that keep the transformed bounding box of the digit
    (pixels above ``threshold``) inside the canvas. Resampling is bilinear with zero padding, so the
    output stays in ``[0, 1]``. All images are processed in one batched warp.

    Args:
        digits: ``(N, 1, h, w)`` with ``h, w <= canvas``, values in ``[0, 1]``.
        seed: the transformations are a deterministic function of ``seed`` (drawn on the CPU).
        canvas: output height and width.
        threshold: pixel value above which a pixel counts as part of the digit.

    Returns:
        ``(images, matrices)``: ``(N, 1, canvas, canvas)`` in ``[0, 1]``, and the ``(N, 2, 3)``
        source-to-destination pixel matrices that were applied (pixel centres at integers).
    """
    from kornia.geometry.transform import warp_affine

    if digits.dim() != 4 or digits.shape[1] != 1:
        raise ValueError(f"digits must be (N, 1, H, W), got {tuple(digits.shape)}")
    n, _, h, w = digits.shape
    if h > canvas or w > canvas:
        raise ValueError(f"digits of size {h}x{w} do not fit a {canvas}x{canvas} canvas")
    top, left = (canvas - h) // 2, (canvas - w) // 2
    placed = F.pad(digits.float(), (left, canvas - w - left, top, canvas - h - top))
    gen = torch.Generator().manual_seed(seed)
    angle, shear, sx, sy = random_affine_params(n, gen)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # (N, 2, 2)
    shr = torch.eye(2, dtype=torch.float64).repeat(n, 1, 1)
    shr[:, 0, 1] = shear
    lin = rot @ shr @ torch.diag_embed(torch.stack([sx, sy], -1))
    # where the digit's bounding box lands, relative to the canvas centre, before translation
    c = (canvas - 1) / 2.0
    box = _bounding_boxes(placed.cpu(), threshold) - c
    corners = torch.stack([box[:, [0, 2]], box[:, [0, 3]], box[:, [1, 2]], box[:, [1, 3]]], dim=1)  # (N, 4, 2)
    moved = corners @ lin.transpose(1, 2)
    lo = -c - moved.amin(dim=1)  # smallest shift that keeps the box inside, per axis: (N, 2)
    hi = c - moved.amax(dim=1)
    hi = torch.maximum(hi, lo)  # a box too large for the canvas (impossible in affNIST's ranges) gets the lower bound
    shift = lo + (hi - lo) * torch.rand(n, 2, generator=gen, dtype=torch.float64)
    # dst = lin @ (src - c) + c + shift, in pixel coordinates
    mat = torch.cat([lin, (c - lin @ torch.full((n, 2, 1), c, dtype=torch.float64)) + shift.unsqueeze(-1)], dim=2)
    mat = mat.to(placed)
    out = warp_affine(placed, mat.to(placed.device), (canvas, canvas), mode="bilinear",
                      padding_mode="zeros", align_corners=True)
    return out.clamp(0.0, 1.0), mat


def center_on_canvas(digits: Tensor, canvas: int = CANVAS) -> Tensor:
    """``(N, 1, h, w)`` digits zero-padded to the centre of a ``(N, 1, canvas, canvas)`` canvas
    (affNIST's untransformed "just centered" version)."""
    h, w = digits.shape[-2:]
    top, left = (canvas - h) // 2, (canvas - w) // 2
    return F.pad(digits.float(), (left, canvas - w - left, top, canvas - h - top))


# ---------------------------------------------------------------------------------------- digit sets
@dataclass
class DigitSets:
    """The images of an STN experiment, all ``(N, 1, 40, 40)`` in ``[0, 1]``.

    ``splits`` maps a split name (``train``, ``val``, ``val6``, ..., ``test8``, ``test6``, ...) to images;
    ``target`` is the one example image ``(1, 1, 40, 40)``; ``source`` says where the data came from.
    ``aux`` and ``aux_val`` (optional, ``(D, n, 1, 40, 40)``: ``n`` images of each of ``D`` other digits,
    from the training and the validation data) serve a meta-objective on other digits, never the optimizee.
    """

    splits: dict[str, Tensor]
    target: Tensor
    source: str
    aux: Tensor | None = None
    aux_val: Tensor | None = None

    def to(self, device: torch.device | str) -> DigitSets:
        aux, aux_val = (None if t is None else t.to(device) for t in (self.aux, self.aux_val))
        return DigitSets({k: v.to(device) for k, v in self.splits.items()}, self.target.to(device), self.source,
                         aux, aux_val)


def _mnist(data_dir: Path, split: str) -> tuple[Tensor, Tensor]:
    """MNIST ``split`` (``"train"``/``"test"``) as float ``(N, 1, 28, 28)`` in [0, 1] and labels ``(N,)``."""
    images, labels = load_raw("mnist", data_dir, split)
    return images.float().div_(255.0), labels


def _take(images: Tensor, labels: Tensor, digit: int, start: int, count: int, what: str) -> Tensor:
    sel = images[labels == digit][start:start + count]
    if sel.shape[0] < count:
        raise ValueError(f"{what}: only {sel.shape[0]} images of digit {digit} from index {start}, "
                         f"{count} requested")
    return sel


def load_digit_sets(data_dir: str | os.PathLike | None = None, digit: int = 8,
                    test_digits: Sequence[int] = (8, 6, 1), n_train: int = 2000, n_val: int = 200,
                    n_test: int = 200, target_index: int = 0, seed: int = 0, source: str = "auto",
                    aux_digits: Sequence[int] = (), n_aux: int = 200, n_aux_val: int = 100) -> DigitSets:
    """Training, validation and test digits for the STN experiment, and the target example.

    Splits: ``train`` and ``val`` hold ``digit``; ``test<d>`` holds ``n_test`` unseen images of
    each ``d`` in ``test_digits`` (from the test set, never trained on); ``val<d>`` holds ``n_val`` validation
    images of each other test digit (from the training data, or affNIST's validation file: never test images), for
    monitoring meta-training without looking at the test digits. With ``aux_digits``,
    :attr:`DigitSets.aux` holds ``n_aux`` training images and :attr:`DigitSets.aux_val` ``n_aux_val``
    validation images of each of those digits (never test images; the digits must differ from
    ``digit`` and from ``test_digits``).

    Args:
        data_dir: data folder (default ``$L2L_DATA_DIR`` or ``./data``): the real affNIST files are
            looked for in ``<data_dir>/affNIST`` and MNIST is read from ``data_dir`` otherwise.
        digit: the digit trained on (8 in the study).
        target_index: which ``digit`` image is the target. With generated data it is that MNIST
            training digit, centred and untransformed (and not among the training images);
            with the real files it is that training image.
        seed: generation seed (generated data only).
        source: ``"auto"`` (the ``.mat`` files if all splits are present, else generated),
            ``"mat"`` or ``"mnist"``.
    """
    data_dir = resolve_data_dir(data_dir)
    if source not in ("auto", "mat", "mnist"):
        raise ValueError(f"source must be 'auto', 'mat' or 'mnist', got {source!r}")
    if set(aux_digits) & {digit, *test_digits}:
        raise ValueError(f"aux_digits {list(aux_digits)} must differ from the trained digit {digit} and the "
                         f"test digits {list(test_digits)}: a meta-objective on them would tune on the test digits")
    files = {s: find_affnist_files(data_dir, s) for s in MAT_FILES}
    have_mat = all(files.values())
    if source == "mat" and not have_mat:
        raise ValueError(f"source='mat' but the affNIST files are missing under {data_dir / 'affNIST'} "
                         f"(need training, validation and test .mat files)")
    if source == "mat" or (source == "auto" and have_mat):
        loaded = {}
        for s, paths in files.items():
            parts = [load_affnist_mat(p) for p in paths]
            loaded[s] = (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
        tr_x, tr_y = loaded["train"]
        target = _take(tr_x, tr_y, digit, target_index, 1, "target")
        splits = {"train": torch.cat([_take(tr_x, tr_y, digit, 0, target_index, "train"),
                                      _take(tr_x, tr_y, digit, target_index + 1, n_train - target_index, "train")]),
                  "val": _take(*loaded["val"], digit, 0, n_val, "val")}
        for d in test_digits:
            splits[f"test{d}"] = _take(*loaded["test"], d, 0, n_test, f"test{d}")
        for d in _other(test_digits, digit):
            splits[f"val{d}"] = _take(*loaded["val"], d, 0, n_val, f"val{d}")
        where = ", ".join(str(p) for ps in files.values() for p in ps[:1])
        aux = _stack_digits([_take(*loaded["train"], d, 0, n_aux, f"aux{d}") for d in aux_digits])
        aux_val = _stack_digits([_take(*loaded["val"], d, 0, n_aux_val, f"aux_val{d}") for d in aux_digits])
        return DigitSets(splits, target, f"affNIST .mat files ({where} ...)", aux, aux_val)
    # generated: train/val from MNIST train (disjoint images), tests from MNIST test
    tr_x, tr_y = _mnist(data_dir, "train")
    te_x, te_y = _mnist(data_dir, "test")
    eights = _take(tr_x, tr_y, digit, 0, target_index + 1 + n_train + n_val, "MNIST train")
    target = center_on_canvas(eights[target_index:target_index + 1])
    rest = torch.cat([eights[:target_index], eights[target_index + 1:]])
    splits = {"train": affnist_transform(rest[:n_train], seed)[0],
              "val": affnist_transform(rest[n_train:n_train + n_val], seed + 1)[0]}
    for i, d in enumerate(test_digits):
        splits[f"test{d}"] = affnist_transform(_take(te_x, te_y, d, 0, n_test, "MNIST test"), seed + 2 + i)[0]
    for d in _other(test_digits, digit):  # validation images of the other test digits: MNIST train, never test
        splits[f"val{d}"] = affnist_transform(_take(tr_x, tr_y, d, 0, n_val, "MNIST train"), seed + 200 + d)[0]
    # other digits for a meta-objective: MNIST train images (never test ones), seeds apart from the splits'
    others = [affnist_transform(_take(tr_x, tr_y, d, 0, n_aux + n_aux_val, "MNIST train"), seed + 100 + d)[0]
              for d in aux_digits]
    return DigitSets(splits, target, f"generated from MNIST, seed {seed}",
                     _stack_digits([o[:n_aux] for o in others]), _stack_digits([o[n_aux:] for o in others]))


def _other(test_digits: Sequence[int], digit: int) -> list[int]:
    """The test digits other than the trained one, each once (their validation splits ``val<d>``)."""
    return [d for d in dict.fromkeys(test_digits) if d != digit]


def _stack_digits(per_digit: list[Tensor]) -> Tensor | None:
    """``D`` tensors ``(n, 1, H, W)`` -> ``(D, n, 1, H, W)``; ``None`` for no digits."""
    return torch.stack(per_digit) if per_digit else None


# ---------------------------------------------------------------------------------------- DataModule
class AffNISTDataModule(TensorDataModule):
    """The digit sets of the STN task (:func:`load_digit_sets`) as a LightningDataModule.

    :meth:`prepare_data` checks the real ``.mat`` files or MNIST's (extracting or downloading MNIST once);
    :meth:`setup` loads (or generates) the :class:`DigitSets` onto the device: :attr:`data`.

    Args:
        data_dir: data folder (default ``$L2L_DATA_DIR`` or ``./data``); affNIST ``.mat`` files in
            ``<data_dir>/affNIST`` are used when present, else digits are generated from MNIST.
        source: ``"auto"``, ``"mat"`` or ``"mnist"`` (see :func:`load_digit_sets`).
        digit, test_digits: the digit trained on and the digits of the unseen test splits.
        n_train, n_val, n_test: images per split (``n_test`` per test digit).
        target_index: which ``digit`` image is the target example.
        data_seed: generation seed of the affine transforms (generated data only).
        device: where the tensors live; default: the trainer's device when attached, else CPU.
    """

    def __init__(self, data_dir: str | None = None, source: str = "auto", digit: int = 8,
                 test_digits: tuple[int, ...] = (8, 6, 1), n_train: int = 2000, n_val: int = 200,
                 n_test: int = 200, target_index: int = 13, data_seed: int = 0, device: str | None = None) -> None:
        super().__init__(device)
        if source not in ("auto", "mat", "mnist"):
            raise DataError(f"source must be 'auto', 'mat' or 'mnist', got {source!r}")
        self.data_dir, self.source, self.digit, self.test_digits = data_dir, source, digit, tuple(test_digits)
        self.n_train, self.n_val, self.n_test = n_train, n_val, n_test
        self.target_index, self.data_seed = target_index, data_seed
        self.data: DigitSets | None = None

    def uses_mat_files(self) -> bool:
        """Whether the real ``.mat`` files are the source (else digits generated from MNIST)."""
        root = resolve_data_dir(self.data_dir)
        return self.source == "mat" or (self.source == "auto" and all(find_affnist_files(root, s) for s in MAT_FILES))

    @property
    def data_source(self) -> str:
        if self.data is not None:
            where = self.data.source
        elif self.uses_mat_files():
            where = f"affNIST .mat files in {resolve_data_dir(self.data_dir) / 'affNIST'}"
        else:
            where = f"generated from MNIST in {resolve_data_dir(self.data_dir)}, seed {self.data_seed}"
        return f"affNIST digits {where}; train {self.n_train}, val {self.n_val}, test {self.n_test} per digit"

    def digit_set_args(self) -> dict:
        """The arguments of :func:`load_digit_sets` (a subclass may add some)."""
        return dict(data_dir=self.data_dir, digit=self.digit, test_digits=self.test_digits, n_train=self.n_train,
                    n_val=self.n_val, n_test=self.n_test, target_index=self.target_index, seed=self.data_seed,
                    source=self.source)

    def _prepare(self) -> None:
        if self.uses_mat_files():
            missing = [s for s in MAT_FILES if not find_affnist_files(resolve_data_dir(self.data_dir), s)]
            if missing:
                raise DataError(f"source 'mat' but the affNIST files are missing under "
                                f"{resolve_data_dir(self.data_dir) / 'affNIST'} (need training, validation and test .mat files)")
        else:  # MNIST's files, and enough images of each digit (so that setup() cannot fail on counts)
            train, test = (load_raw("mnist", self.data_dir, split)[1] for split in ("train", "test"))
            need = [(train, self.digit, self.target_index + 1 + self.n_train + self.n_val, "training")]
            need += [(test, d, self.n_test, "test") for d in self.test_digits]
            for labels, d, n, split in need:
                if int((labels == d).sum()) < n:
                    raise DataError(f"MNIST has {int((labels == d).sum())} {split} images of digit {d}, "
                                    f"fewer than the {n} requested")

    def _load(self, device: torch.device) -> None:
        if self.data is None:
            try:
                self.data = load_digit_sets(**self.digit_set_args())
            except ValueError as e:  # too few images of a digit, a test digit among the others, ...
                raise DataError(str(e)) from None
        self.data = self.data.to(device)
