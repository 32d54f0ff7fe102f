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

from l2l_torch.checkpoint import (
    LIGHTNING_PREFIX,
    CheckpointError,
    load_lightning_checkpoint,
    read_learned_optimizer,
    save_learned_optimizer,
)
from l2l_torch.learned_optimizers.base import LearnedOptimizerBase

PREFIX = LIGHTNING_PREFIX


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
    load_lightning_checkpoint(path, "already a learned-optimizer file; nothing to export")  # (that kind of file)
    lopt, meta = read_learned_optimizer(path)
    return lopt, {**meta, "exported_from": str(path), "selected_by": "export of a Lightning checkpoint"}


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
