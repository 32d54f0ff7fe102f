"""Benchmarks of l2l_torch; run each as ``python benchmarks/NAME.py`` (its docstring says what it measures).

A script that writes files writes them only into the folder named by ``--out DIR``. Without ``--out`` it prints
its table and summary and writes nothing, so committed outputs change only when someone names their folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_out_argument(ap: argparse.ArgumentParser, *files: str) -> None:
    """``--out DIR``: the folder to write ``files`` into (default: none, the script writes nothing)."""
    ap.add_argument("--out", type=Path, default=None, metavar="DIR",
                    help=f"folder to write {', '.join(files)} into (created if missing); default: write no file")


def write_json(out: Path | None, name: str, obj: Any) -> Path | None:
    """Write ``obj`` as ``out/name`` (indented JSON) and say so on stderr; with ``out`` None, write nothing and
    say how to keep it. Returns the path written, or None."""
    if out is None:
        print(f"(not written: --out DIR writes {name})", file=sys.stderr)
        return None
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    path.write_text(json.dumps(obj, indent=1) + "\n")
    print(f"wrote {path}", file=sys.stderr)
    return path
