"""scripts/cuda_check.sh (run on machines with a GPU): it parses, every command it runs exists and takes the
options it passes, and its pytest selection selects tests. Its CPU mode (``CUDA_CHECK_DEVICE=cpu``) runs every part
with tiny settings; that takes a few minutes and is run by hand."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest

from tests.helpers import REPO

SCRIPT = REPO / "scripts" / "cuda_check.sh"


def test_script_parses():
    r = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def _python_commands() -> list[list[str]]:
    """Every ``run LIMIT "$PY" SCRIPT.py ARGS`` of the script, its continuation lines joined, ``$out`` and ``$PY``
    replaced."""
    text = re.sub(r"\\\n\s*", " ", SCRIPT.read_text())
    cmds = []
    for line in text.splitlines():
        m = re.match(r'\s*run \S+ "\$PY" (\S+\.py .*)$', line)
        if m:
            cmds.append(shlex.split(m.group(1).replace('"$out"', "OUT").replace('"$out/affnist_run"', "OUT")))
    return cmds


def test_script_runs_the_benchmarks_and_train_on_both_devices():
    scripts = [c[0] for c in _python_commands()]
    for name in ("benchmarks/deployment.py", "benchmarks/meta_throughput.py", "benchmarks/launches.py", "train.py"):
        assert scripts.count(name) == 2, name  # the CUDA command and the CPU mode's
    assert any("--device" in c and "cuda" in c for c in _python_commands() if c[0] == "benchmarks/launches.py")


@pytest.mark.parametrize("script", ["benchmarks/deployment.py", "benchmarks/meta_throughput.py",
                                    "benchmarks/launches.py"])
def test_benchmark_options_exist(script):
    """Each option the script passes is one the benchmark's --help lists."""
    r = subprocess.run([sys.executable, script, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for cmd in _python_commands():
        if cmd[0] == script:
            for opt in (a for a in cmd[1:] if a.startswith("--")):
                assert opt in r.stdout, f"{script} has no {opt}"


def test_pytest_selection_selects_cuda_cases():
    r = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-k", "cuda",
                        "tests/test_lstm.py", "tests/test_population_unroll.py"], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
    selected = [ln for ln in r.stdout.splitlines() if "::" in ln]
    assert any("[cuda" in ln or "-cuda" in ln for ln in selected)
    assert any("test_population_equals_one_by_one_on_cuda" in ln for ln in selected)
