"""The lines of one meta-training run's terminal output that its experiment folder keeps (``meta_training_run.txt``).

    python -m research.tools.run_excerpt LOG [--steps 1000 2000] > meta_training_run.txt

``LOG`` is what ``train.py`` wrote to the terminal (stdout and stderr together). The excerpt is the run's ``data:``
and ``plan:`` lines, its progress bar at the given meta-steps and at the last one (the bar's final state at each), and
its closing lines from the one that says why it stopped. Progress bars redraw with carriage returns and cursor
movements; those are dropped.
"""

from __future__ import annotations

import argparse
import re
import sys

_CONTROL = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_BAR = re.compile(r"meta-step: \|[^|]*\| (\d+)/\?")
#: how the closing summary of ``train.py`` begins (``summary`` there): budget used up, step limit reached, Ctrl-C
_STOP = ("time budget used up at meta-step", "done: meta-step", "interrupted at meta-step")


def excerpt(text: str, steps: tuple[int, ...] = (1000, 2000)) -> str:
    """The excerpt of a run's terminal output ``text`` (see the module's docstring)."""
    lines = [_CONTROL.sub("", line).rstrip() for line in text.replace("\r", "\n").split("\n")]
    lines = [line for line in lines if line.strip()]
    head, inside = [], False
    for line in lines:
        inside = line.startswith(("data:", "plan:")) or (inside and line.startswith("      "))
        if inside:  # the line itself and its indented continuations
            head.append(line)
    bars: dict[int, str] = {}
    for line in lines:
        if m := _BAR.search(line):
            bars[int(m.group(1))] = line[m.start():]  # the bar's last state at that meta-step
    if not bars:
        raise ValueError("no meta-step progress bar in this output")
    last = max(bars)
    shown = [s for s in steps if s in bars and s < last] + [last]
    stop = next((i for i, line in enumerate(lines) if line.startswith(_STOP)), None)
    tail = [] if stop is None else [line for line in lines[stop:] if not _BAR.search(line)]
    label = ", ".join(f"{s:,}" for s in shown[:-1])
    return "\n".join(head + [f"progress bar at meta-steps {label + ' and ' if label else ''}the last:"]
                     + [bars[s] for s in shown] + tail) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("log", help="the run's terminal output")
    p.add_argument("--steps", type=int, nargs="*", default=[1000, 2000], help="meta-steps whose bar to keep")
    a = p.parse_args(argv)
    with open(a.log, encoding="utf-8", errors="replace") as f:
        sys.stdout.write(excerpt(f.read(), tuple(a.steps)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
