"""Rewrite learned-optimizer files of checkpoint format version 1 in version 2 (``l2l_torch/checkpoint.py``).

    python -m research.tools.migrate_checkpoints                      # the shipped ones, l2l_torch/pretrained/*.pt
    python -m research.tools.migrate_checkpoints FILE.pt ... --check  # only say which files are of an older version

Each file is read with the version-1 reader (:func:`l2l_torch.checkpoint.load_learned_optimizer`, which converts
the stored configuration with :func:`~l2l_torch.checkpoint.migrate_config`) and written back with
:func:`~l2l_torch.checkpoint.save_learned_optimizer`: the same architecture, weights and metadata, the whole
configuration in the form of version 2. Before a file is replaced, the optimizer rebuilt from what would be
written must have bit-identical weights and the same configuration. A ``NAME.json`` beside a file (the metadata
of a shipped optimizer, ``l2l_torch/pretrained``) gets the new configuration too. Files of version 2 are left as
they are, so running the tool twice changes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

from l2l_torch.checkpoint import VERSION, load_learned_optimizer, safe_torch_load, save_learned_optimizer

PRETRAINED = Path(__file__).resolve().parents[2] / "l2l_torch" / "pretrained"


def migrate(path: Path, check: bool = False) -> int | None:
    """Rewrite ``path`` in format :data:`~l2l_torch.checkpoint.VERSION` if it is older. Returns its old version
    (``None`` when it was already current); with ``check``, only returns it."""
    raw = safe_torch_load(path, "learned-optimizer checkpoint")
    if raw.get("version") == VERSION:
        return None
    if check:
        return raw.get("version")
    lopt, meta = load_learned_optimizer(path)
    with tempfile.TemporaryDirectory() as tmp:  # what would be written, read back
        save_learned_optimizer(lopt, Path(tmp) / "new.pt", meta)
        back, back_meta = load_learned_optimizer(Path(tmp) / "new.pt")
        new = torch.load(Path(tmp) / "new.pt", weights_only=True)
    same = (back.config() == lopt.config() == new["config"] and back_meta == raw["meta"]
            and new["state_dict"].keys() == raw["state_dict"].keys()
            and all(torch.equal(new["state_dict"][k], v) for k, v in raw["state_dict"].items()))
    if not same:
        raise SystemExit(f"{path}: the converted file would not hold the same optimizer; left as it is")
    save_learned_optimizer(lopt, path, meta)
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        entry = json.loads(sidecar.read_text())
        if "config" in entry:
            entry["config"] = lopt.config()
            sidecar.write_text(json.dumps(entry, indent=1, ensure_ascii=False, default=str) + "\n")
    return raw.get("version")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", type=Path, help="learned-optimizer files (default: l2l_torch/pretrained/*.pt)")
    ap.add_argument("--check", action="store_true", help="only list the files of an older version")
    a = ap.parse_args(argv)
    files = a.files or sorted(PRETRAINED.glob("*.pt"))
    for f in files:
        old = migrate(f, a.check)
        print(f"{f}: " + (f"version {VERSION}" if old is None else f"version {old}" if a.check
                          else f"version {old}, rewritten in version {VERSION}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
