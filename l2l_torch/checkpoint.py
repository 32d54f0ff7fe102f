"""The versioned file format of a trained learned optimizer (``optimizer.pt``), and reading one back.

A file is a plain dict of primitives and tensors, readable with ``torch.load(weights_only=True)``,
so loading one never unpickles arbitrary objects::

    {
      "format": "l2l_torch.learned_optimizer",
      "version": 2,
      "arch": "lstm",                        # a name in REGISTRY (l2l_torch.learned_optimizers.REGISTRY)
      "config": {...},                       # every constructor argument (hidden size, features, scale, ...)
      "state_dict": {...},                   # theta
      "meta": {"task": ..., "horizon": ..., "trained_on": ..., "selected": ..., ...},
    }

Version 2 stores the whole configuration, defaults included (everything :meth:`config` of the optimizer returns:
every constructor argument but ``init_from`` and, for the LSTM, ``recompute_gates``, which change how, not what,
it computes), and the feature-based optimizers' features by name (``"features": ["g", "m0.9", ...]``). Version 1
files (and Lightning checkpoints written before version 2) store the configuration of the time, which named the
features with switches and lists and left out the options added later; :func:`migrate_config` turns it into the
version 2 form, and every reader here applies it, so version 1 files load as they always did.

:func:`read_learned_optimizer` builds the optimizer stored in a learned-optimizer file or in a Lightning
checkpoint of meta-training: loading, exporting (:mod:`l2l_torch.export`), the resume check
(:func:`l2l_torch.reliability.check_resume_checkpoint`) and warm starts
(:meth:`~l2l_torch.learned_optimizers.LearnedOptimizerBase.warm_start`) all go through it.

This module imports no architecture: each one adds itself to :data:`REGISTRY` with :func:`register` when
:mod:`l2l_torch.learned_optimizers` is imported (which importing l2l_torch does).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

FORMAT = "l2l_torch.learned_optimizer"
VERSION = 2
#: the format versions :func:`read_checkpoint` reads (older ones through :func:`migrate_config`)
READABLE_VERSIONS = (1, 2)
#: the prefix of theta's keys in the ``state_dict`` of a Lightning checkpoint of meta-training
LIGHTNING_PREFIX = "lopt."

#: architectures that checkpoints can name (name -> class); filled by :func:`register`
REGISTRY: dict[str, type[nn.Module]] = {}


def register(name: str):
    """Class decorator: make a learned-optimizer architecture loadable from a checkpoint by ``name``."""

    def deco(cls):
        cls.arch_name = name
        REGISTRY[name] = cls
        return cls

    return deco


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


def save_learned_optimizer(lopt: nn.Module, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> None:
    """Write ``lopt`` (a :class:`~l2l_torch.learned_optimizers.LearnedOptimizerBase`: its architecture, whole
    config and theta) to ``path`` atomically, in format :data:`VERSION`.

    Raises:
        ValueError: if theta contains a non-finite value (a checkpoint never holds NaN/Inf).
    """
    state = {k: v.detach().cpu().clone() for k, v in lopt.state_dict().items()}
    for k, v in state.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise ValueError(f"refusing to save a learned optimizer with non-finite weights ({k})")
    atomic_torch_save({"format": FORMAT, "version": VERSION, "arch": lopt.arch_name,
                       "config": lopt.config(), "state_dict": state, "meta": dict(meta or {})}, path)


def write_meta_json(path: str | os.PathLike, meta: Mapping[str, Any]) -> Path:
    """Write ``meta`` (an optimizer file's metadata) as the human-readable ``.json`` beside the optimizer file
    ``path`` (``optimizer.pt`` -> ``optimizer.json``). Values JSON cannot hold are written as strings.
    Returns the ``.json`` path."""
    out = Path(path).with_suffix(".json")
    out.write_text(json.dumps(dict(meta), indent=2, default=str))
    return out


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


# ---------------------------------------------------------------- format 1 -> 2
#: the options of format 1 that chose the features (the switches of the FeatureSet of the time), per architecture
#: with their defaults then: what a format-1 configuration that leaves one out meant
_V1_FEATURE_OPTIONS: dict[str, dict[str, Any]] = {
    "small_fc": {"momentum_decays": [0.5, 0.9, 0.99], "use_grad": True, "use_param": True, "use_momentum": True,
                 "use_adam": True, "use_rsqrt": True, "time_taus": [1.0, 3.0, 10.0, 30.0, 100.0],
                 "tensor_scale": False, "tensor_size": False},
    "hyper_adam": {"momentum_decays": [0.5, 0.9, 0.99], "time_taus": [1.0, 3.0, 10.0, 30.0, 100.0],
                   "tensor_scale": True, "tensor_size": False},
}
_V1_FEATURE_OPTIONS["rnnprop"] = _V1_FEATURE_OPTIONS["small_fc"]
#: format-1 options that format 2 dropped, per architecture, with the only value they may have had (every shipped
#: configuration and file had it): the behaviour they chose is now fixed
_V1_FIXED: dict[str, dict[str, Any]] = {
    "small_fc": {"rms_decay": 0.999, "normalize": True},
    "rnnprop": {"rms_decay": 0.999, "normalize": True},
    "hyper_adam": {"mag_mult": 1.0, "init_decay": 0.9},
}


def arch_of(name: str) -> str:
    """The architecture name (``"small_fc"``) of ``name``: an architecture name, a class name
    (``"SmallFCOptimizer"``) or a class path (``"l2l_torch.learned_optimizers.SmallFCOptimizer"``, as in a
    YAML's ``class_path``). Returns ``name`` itself when it is none of these."""
    if name in REGISTRY:
        return name
    short = name.rsplit(".", 1)[-1]
    return next((arch for arch, cls in REGISTRY.items() if cls.__name__ == short), name)


def _number(x: Any) -> str:
    """``x`` as feature names spell it (``l2l_torch.learned_optimizers.features.number_name``): the shortest
    decimal that reads back as ``x``, without a trailing ``.0``."""
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text


def _v1_features(arch: str, opts: dict[str, Any]) -> list[str]:
    """The feature names that format-1 options ``opts`` (all of :data:`_V1_FEATURE_OPTIONS`) chose, in the
    order of the feature rows they gave."""
    decays, taus = list(opts["momentum_decays"]), list(opts["time_taus"])
    for what, xs in (("momentum_decays", decays), ("time_taus", taus)):
        if [float(x) for x in xs] != sorted({float(x) for x in xs}):
            raise ValueError(f"{arch}: {what}={xs} is not strictly ascending: the features of format 2 come in "
                             "ascending order, so the stored weights would read other inputs")
    bs = [_number(b) for b in decays]
    if arch == "hyper_adam":
        flags = {"use_grad": False, "use_param": False, "use_momentum": False, "use_adam": True, "use_rsqrt": False}
    else:
        flags = {k: bool(opts[k]) for k in ("use_grad", "use_param", "use_momentum", "use_adam", "use_rsqrt")}
    return ((["g"] if flags["use_grad"] else []) + (["p"] if flags["use_param"] else [])
            + ([f"m{b}" for b in bs] if flags["use_momentum"] else [])
            + ([f"adam{b}" for b in bs] if flags["use_adam"] else []) + (["rsqrt"] if flags["use_rsqrt"] else [])
            + (["log_rms_g", "log_rms_p"] if opts["tensor_scale"] else [])
            + (["log_numel"] if opts["tensor_size"] else []) + [f"t{_number(t)}" for t in taus])


def migrate_config(arch: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor arguments of format 1 (of a ``version: 1`` file's ``config``, a Lightning checkpoint's
    ``lopt_config`` or a YAML's ``lopt.init_args``) in the form of format 2, for architecture ``arch`` (an
    architecture name, class name or class path: :func:`arch_of`).

    * Feature-based architectures (``small_fc``, ``rnnprop``, ``hyper_adam``): the feature options of format 1
      (``momentum_decays``, ``use_grad``, ``use_param``, ``use_momentum``, ``use_adam``, ``use_rsqrt``,
      ``time_taus``, ``tensor_scale``, ``tensor_size``) become one ``features`` list, in the place of the first
      of them, naming the same feature rows in the same order; an option left out counts with its format-1
      default (:data:`_V1_FEATURE_OPTIONS`). When ``config`` names none of them, no ``features`` entry is added
      (format 2's default features are those of format 1). ``hyper_adam``'s values feature ``"p"``, which format 1
      added for ``weight_decay > 0``, is not listed: ``weight_decay`` still adds it.
    * Options format 2 dropped (:data:`_V1_FIXED`: ``rms_decay`` and ``normalize`` of small_fc and rnnprop,
      ``mag_mult`` and ``init_decay`` of hyper_adam) are removed when they hold the value format 2 fixed.
    * Everything else (``init_from`` included) is kept as it is, and nothing else is added: an argument ``config``
      leaves out keeps its default, which for every option added after format 1 is the value that reproduces the
      behaviour of a configuration written before the option existed.
    * A ``config`` already in the form of format 2 (it has ``features``, or names no option of format 1) comes
      back unchanged, so converting twice is harmless; other architectures (``lstm``) are unchanged.

    Returns:
        A new dict; ``config`` is not modified.

    Raises:
        ValueError: ``config`` mixes ``features`` with the options it replaced; a dropped option holds another
            value than the one format 2 fixed; ``momentum_decays`` or ``time_taus`` are not strictly ascending
            (format 2 orders features so, and the stored weights would then read other inputs).

    Example:
        >>> migrate_config("SmallFCOptimizer", {"hidden": [8], "use_param": False, "use_momentum": False,
        ...                                     "time_taus": [1, 10], "tensor_scale": True, "init_from": "a.pt"})
        {'hidden': [8], 'features': ['g', 'adam0.5', 'adam0.9', 'adam0.99', 'rsqrt', 'log_rms_g', 'log_rms_p', 't1', 't10'], 'init_from': 'a.pt'}
    """
    arch = arch_of(arch)
    old = _V1_FEATURE_OPTIONS.get(arch)
    if old is None:
        return dict(config)
    given = [k for k in config if k in old]
    if "features" in config and given:
        raise ValueError(f"{arch}: features= replaces {', '.join(given)}; give one or the other")
    out: dict[str, Any] = {}
    for k, v in config.items():
        fixed = _V1_FIXED.get(arch, {})
        if k in fixed:
            if v != fixed[k]:
                raise ValueError(f"{arch}: {k}={v!r} is no longer an option ({k} is fixed at {fixed[k]!r}, the "
                                 "value of every configuration and file of the project)")
            continue
        if k in old:
            if k == given[0]:
                out["features"] = _v1_features(arch, {**old, **{g: config[g] for g in given}})
            continue
        out[k] = v
    return out


# ---------------------------------------------------------------- reading
def _validated(obj: Any, path: Path) -> dict[str, Any]:
    """``obj`` (a loaded learned-optimizer file) checked, with its config in the form of format 2."""
    if isinstance(obj, dict) and "state_dict" in obj and "pytorch-lightning_version" in obj:
        raise CheckpointError(f"{path} is a Lightning training checkpoint, not a learned-optimizer file; "
                              "export it with `python -m l2l_torch.export CKPT OUT`")
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a torch file but not a learned-optimizer checkpoint "
                              f"(no format tag {FORMAT!r})")
    if obj.get("version") not in READABLE_VERSIONS:
        raise CheckpointError(f"{path} has checkpoint format version {obj.get('version')}, "
                              f"this l2l_torch reads versions {' and '.join(map(str, READABLE_VERSIONS))}")
    if not isinstance(obj.get("config"), dict) or not isinstance(obj.get("state_dict"), dict):
        raise CheckpointError(f"{path} is a damaged learned-optimizer checkpoint (no config or weights)")
    if obj.get("arch") not in REGISTRY:
        raise CheckpointError(f"{path} holds an unknown architecture {obj.get('arch')!r}; "
                              f"known: {sorted(REGISTRY)}")
    try:
        config = migrate_config(obj["arch"], obj["config"])
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None
    return {**obj, "config": config}


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a learned-optimizer file without building the network.

    ``path`` is resolved with :func:`resolve_path`. The returned dict is the file's, with ``"config"`` in the
    form of format 2 (:func:`migrate_config`; that of a version 1 file may leave out arguments that have their
    default: the optimizer :func:`load_learned_optimizer` builds has the whole configuration).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: the file is truncated, not a checkpoint, of a format version this l2l_torch does not
            read, or of an unknown architecture.
    """
    path = resolve_path(path)
    return _validated(safe_torch_load(path, "learned-optimizer checkpoint"), path)


def _build(arch: str, config: Mapping[str, Any], weights: Mapping[str, torch.Tensor], path: Path,
           expect_arch: str | None) -> nn.Module:
    """The optimizer of architecture ``arch`` with constructor arguments ``config`` (either format) and
    ``weights``: the one place a stored optimizer is rebuilt."""
    if arch not in REGISTRY:
        raise CheckpointError(f"{path} holds an unknown architecture {arch!r}; known: {sorted(REGISTRY)}")
    if expect_arch is not None and arch != expect_arch:
        raise CheckpointError(f"{path} holds a {arch!r} optimizer, expected {expect_arch!r}")
    try:
        config = migrate_config(arch, config)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None
    try:
        lopt = REGISTRY[arch](**config)
        lopt.load_state_dict(weights)
    except (TypeError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"{path}: weights do not match architecture {arch!r} "
                              f"({str(e).splitlines()[0]})") from None
    return lopt


def _is_lightning(obj: Any) -> bool:
    return isinstance(obj, dict) and "state_dict" in obj and "pytorch-lightning_version" in obj


def read_learned_optimizer(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                           expect_arch: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Build the learned optimizer stored at ``path``: a learned-optimizer file (``optimizer.pt``, either format
    version) or a Lightning checkpoint of meta-training (``.ckpt``, which holds theta under the ``state_dict``
    keys ``lopt.*`` and the architecture under ``checkpoint["l2l"]``: ``lopt_arch``, ``lopt_config``).

    Returns:
        ``(lopt, meta)``: the optimizer (a :class:`~l2l_torch.learned_optimizers.LearnedOptimizerBase`, on
        ``map_location``) and what it was trained on: a file's ``meta``; for a Lightning checkpoint, the run's
        ``describe`` section and its ``global_step``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: the file is unreadable, neither kind of checkpoint (a Lightning checkpoint of another
            program included), of an unknown architecture or another than ``expect_arch``, or its weights do not
            fit the architecture it names.
    """
    path = resolve_path(path)
    obj = safe_torch_load(path, "learned-optimizer checkpoint", mmap=True)
    if _is_lightning(obj):
        extra = obj.get("l2l")
        if not isinstance(extra, dict) or "lopt_arch" not in extra:
            raise CheckpointError(f"{path} is a Lightning checkpoint, but not of a l2l_torch meta-training run "
                                  "(no 'l2l' section naming the optimizer architecture)")
        weights = {k[len(LIGHTNING_PREFIX):]: v for k, v in obj["state_dict"].items()
                   if k.startswith(LIGHTNING_PREFIX)}
        lopt = _build(extra["lopt_arch"], extra.get("lopt_config") or {}, weights, path, expect_arch)
        meta = {**dict(extra.get("describe") or {}), "global_step": int(obj.get("global_step", 0))}
    else:
        obj = _validated(obj, path)
        lopt = _build(obj["arch"], obj["config"], obj["state_dict"], path, expect_arch)
        meta = obj["meta"]
    return lopt.to(map_location), meta


def load_learned_optimizer(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                           expect_arch: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Build the learned optimizer of the learned-optimizer file ``path`` (not a Lightning checkpoint: the error
    then says how to export one). Returns ``(lopt, meta)``, as :func:`read_learned_optimizer`.

    Raises:
        FileNotFoundError, CheckpointError: see :func:`read_checkpoint`; also when the weights do not
            fit the stated architecture, or ``expect_arch`` is given and differs.
    """
    obj = read_checkpoint(path)
    lopt = _build(obj["arch"], obj["config"], obj["state_dict"], resolve_path(path), expect_arch)
    return lopt.to(map_location), obj["meta"]


def check_compatible(lopt: nn.Module, meta: dict[str, Any], kinds: dict[str, str]) -> None:
    """Check that a loaded learned optimizer can optimize parameters of these kinds.

    Args:
        lopt, meta: as returned by :func:`read_learned_optimizer`.
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
