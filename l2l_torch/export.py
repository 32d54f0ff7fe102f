"""Export a Lightning meta-training checkpoint to the learned-optimizer file format.

    python -m l2l_torch.export runs/quadratic/checkpoints/last.ckpt quadratic.pt

A Lightning checkpoint of :class:`l2l_torch.meta_module.MetaModule` holds theta under the
``state_dict`` keys ``lopt.*`` and the architecture under ``checkpoint["l2l"]`` (``lopt_arch``,
``lopt_config``, ``describe``), so no YAML is needed. Both files are read with
``torch.load(weights_only=True)``: a Lightning checkpoint of this project contains only
tensors, numbers, strings and containers, so nothing is unpickled.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from l2l_torch.checkpoint import CheckpointError, load_lightning_checkpoint, save_learned_optimizer
from l2l_torch.learned_optimizers import REGISTRY, LearnedOptimizerBase

PREFIX = "lopt."


def lopt_from_lightning(path: str | os.PathLike) -> tuple[LearnedOptimizerBase, dict[str, Any]]:
    """Rebuild the learned optimizer stored in a Lightning meta-training checkpoint.

    Returns:
        ``(lopt, meta)`` where ``meta`` says what it was trained on (task, horizon, global step, ...).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: the file is not a readable Lightning checkpoint of a MetaModule, or its
            weights do not fit the architecture it names.
    """
    path = Path(path)
    ckpt = load_lightning_checkpoint(path, "already a learned-optimizer file; nothing to export")
    extra = ckpt.get("l2l")
    if not isinstance(extra, dict) or "lopt_arch" not in extra:
        raise CheckpointError(f"{path} is a Lightning checkpoint, but not of a l2l_torch meta-training run "
                              "(no 'l2l' section naming the optimizer architecture)")
    arch = extra["lopt_arch"]
    if arch not in REGISTRY:
        raise CheckpointError(f"{path} holds an unknown architecture {arch!r}; known: {sorted(REGISTRY)}")
    theta = {k[len(PREFIX):]: v for k, v in ckpt["state_dict"].items() if k.startswith(PREFIX)}
    try:
        lopt = REGISTRY[arch](**extra.get("lopt_config", {}))
        lopt.load_state_dict(theta)
    except (TypeError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"{path}: weights do not match architecture {arch!r} "
                              f"({str(e).splitlines()[0]})") from None
    meta = {**dict(extra.get("describe", {})), "global_step": int(ckpt.get("global_step", 0)),
            "exported_from": str(path), "selected_by": "export of a Lightning checkpoint"}
    return lopt, meta


def export(ckpt_path: str | os.PathLike, out_path: str | os.PathLike) -> dict[str, Any]:
    """Write the learned optimizer of a Lightning checkpoint to ``out_path`` (atomically).

    Returns the metadata written. Raises as :func:`lopt_from_lightning`, and ``ValueError`` if
    theta is not finite.
    """
    lopt, meta = lopt_from_lightning(ckpt_path)
    save_learned_optimizer(lopt, out_path, meta)
    return meta


def main(argv: list[str] | None = None) -> None:
    from l2l_torch.cli import ArgumentParser, fail

    p = ArgumentParser(prog="python -m l2l_torch.export", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpt", help="Lightning checkpoint of a meta-training run (e.g. runs/TASK/checkpoints/last.ckpt)")
    p.add_argument("out", help="learned-optimizer file to write (e.g. optimizer.pt)")
    a = p.parse_args(argv)
    if Path(a.out).resolve() == Path(a.ckpt).resolve():
        fail("the output path must differ from the Lightning checkpoint")
    try:
        meta = export(a.ckpt, a.out)
    except (FileNotFoundError, CheckpointError, ValueError) as e:
        fail(str(e))
    print(f"wrote {a.out} (trained on {meta.get('task', {}).get('name', '?')}, "
          f"horizon {meta.get('horizon', '?')}, global step {meta['global_step']})")


if __name__ == "__main__":
    sys.exit(main())
