"""The versioned file format of a trained learned optimizer (``optimizer.pt``).

A file is a plain dict of primitives and tensors, readable with ``torch.load(weights_only=True)``,
so loading one never unpickles arbitrary objects::

    {
      "format": "l2l_torch.learned_optimizer",
      "version": 1,
      "arch": "lstm",                        # a name in l2l_torch.learned_optimizers.REGISTRY
      "config": {...},                       # constructor kwargs (hidden size, preprocessing, scale, ...)
      "state_dict": {...},                   # theta
      "meta": {"task": ..., "horizon": ..., "trained_on": ..., "selected": ..., ...},
    }
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from l2l_torch.learned_optimizers import REGISTRY, LearnedOptimizerBase

FORMAT = "l2l_torch.learned_optimizer"
VERSION = 1


class CheckpointError(ValueError):
    """A file that cannot be used as a learned-optimizer checkpoint (the message says why)."""


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename: a crash mid-write
    leaves any previous file at ``path`` intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file 0600; give it the permissions a plain open() would have
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_learned_optimizer(lopt: LearnedOptimizerBase, path: str | os.PathLike,
                           meta: dict[str, Any] | None = None) -> None:
    """Write ``lopt`` (architecture, config and theta) to ``path`` atomically.

    Raises:
        ValueError: if theta contains a non-finite value (a checkpoint never holds NaN/Inf).
    """
    state = {k: v.detach().cpu().clone() for k, v in lopt.state_dict().items()}
    for k, v in state.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise ValueError(f"refusing to save a learned optimizer with non-finite weights ({k})")
    atomic_torch_save({"format": FORMAT, "version": VERSION, "arch": lopt.arch_name,
                       "config": lopt.config(), "state_dict": state, "meta": dict(meta or {})}, path)


def safe_torch_load(path: str | os.PathLike, what: str, mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with one-sentence errors.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: the file is truncated, not a torch file, or would need unpickling; ``what``
            names what was expected (e.g. ``"Lightning checkpoint"``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # truncated zip, random bytes, pickled objects, ...
        raise CheckpointError(f"{path} is not a readable {what} "
                              f"(corrupt, truncated or not a torch file: {type(e).__name__})") from None


def load_lightning_checkpoint(path: str | os.PathLike, if_learned_optimizer: str) -> dict[str, Any]:
    """A Lightning training checkpoint read with :func:`safe_torch_load`.

    Args:
        if_learned_optimizer: how the error ends when ``path`` is a learned-optimizer file instead
            (``f"{path} is {if_learned_optimizer}"``), so each caller can say what to do.

    Raises:
        FileNotFoundError, CheckpointError: missing, unreadable, a learned-optimizer file, or not Lightning's.
    """
    ckpt = safe_torch_load(path, "Lightning checkpoint", mmap=True)
    if isinstance(ckpt, dict) and ckpt.get("format") == FORMAT:
        raise CheckpointError(f"{path} is {if_learned_optimizer}")
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "pytorch-lightning_version" not in ckpt:
        raise CheckpointError(f"{path} is not a Lightning checkpoint")
    return ckpt


#: where a relative ``l2l_torch/pretrained/...`` path points in an installed copy
_PACKAGE_PARENT = Path(__file__).resolve().parent.parent
#: folder renamed since some committed files recorded paths in it: old prefix -> new prefix
_MOVED = {"results/": "research/experiments/"}


def resolve_path(path: str | os.PathLike) -> Path:
    """The file a recorded learned-optimizer path names.

    ``path`` as given when it exists. Otherwise a path inside the package (``l2l_torch/pretrained/NAME.pt``,
    as the shipped configs' warm starts name them) is found in the installed package, and a path recorded
    under ``results/`` before the research folder existed is found under ``research/experiments/``.
    """
    p = Path(path)
    if p.exists() or p.is_absolute():
        return p
    text = p.as_posix()
    if text.startswith("l2l_torch/"):
        return _PACKAGE_PARENT / p
    for old, new in _MOVED.items():
        if text.startswith(old) and Path(new + text[len(old):]).exists():
            return Path(new + text[len(old):])
    return p


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a learned-optimizer file without building the network.

    ``path`` is resolved with :func:`resolve_path`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: the file is truncated, not a checkpoint, of another format version, or of an
            unknown architecture.
    """
    path = resolve_path(path)
    obj = safe_torch_load(path, "learned-optimizer checkpoint")
    if isinstance(obj, dict) and "state_dict" in obj and "pytorch-lightning_version" in obj:
        raise CheckpointError(f"{path} is a Lightning training checkpoint, not a learned-optimizer file; "
                              "export it with `python -m l2l_torch.export CKPT OUT`")
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a torch file but not a learned-optimizer checkpoint "
                              f"(no format tag {FORMAT!r})")
    if obj.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {obj.get('version')}, "
                              f"this l2l_torch reads version {VERSION}")
    if not isinstance(obj.get("config"), dict) or not isinstance(obj.get("state_dict"), dict):
        raise CheckpointError(f"{path} is a damaged learned-optimizer checkpoint (no config or weights)")
    if obj.get("arch") not in REGISTRY:
        raise CheckpointError(f"{path} holds an unknown architecture {obj.get('arch')!r}; "
                              f"known: {sorted(REGISTRY)}")
    return obj


def load_learned_optimizer(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                           expect_arch: str | None = None) -> tuple[LearnedOptimizerBase, dict[str, Any]]:
    """Build the learned optimizer stored at ``path``. Returns ``(lopt, meta)``.

    Raises:
        FileNotFoundError, CheckpointError: see :func:`read_checkpoint`; also when the weights do not
            fit the stated architecture, or ``expect_arch`` is given and differs.
    """
    obj = read_checkpoint(path)
    if expect_arch is not None and obj["arch"] != expect_arch:
        raise CheckpointError(f"{path} holds a {obj['arch']!r} optimizer, expected {expect_arch!r}")
    try:
        lopt = REGISTRY[obj["arch"]](**obj["config"])
        lopt.load_state_dict(obj["state_dict"])
    except (TypeError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"{path}: weights do not match architecture {obj['arch']!r} "
                              f"({str(e).splitlines()[0]})") from None
    return lopt.to(map_location), obj["meta"]


def check_compatible(lopt: LearnedOptimizerBase, meta: dict[str, Any], kinds: dict[str, str]) -> None:
    """Check that a loaded learned optimizer can optimize parameters of these kinds.

    Args:
        lopt, meta: as returned by :func:`load_learned_optimizer`.
        kinds: param name -> ``"conv"``/``"dense"`` of the model to optimize (``Task.param_kinds()``).

    Raises:
        CheckpointError: a kind has no network in ``lopt``, or (one network per kind) the network of
            that kind was never meta-trained: ``meta["param_kinds"]`` lists the kinds seen in
            meta-training, and a per-kind network that saw none is still at its random initialisation.
    """
    try:
        lopt.init_state({n: torch.zeros(1) for n in kinds}, kinds)
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    trained = meta.get("param_kinds")
    if getattr(lopt, "per_kind", False) and trained:
        untrained = sorted(set(kinds.values()) - set(trained))
        if untrained:
            raise CheckpointError(f"its network for {' and '.join(map(repr, untrained))} parameters was never "
                                  f"meta-trained (it was meta-trained on {', '.join(map(repr, trained))} "
                                  "parameters only)")
