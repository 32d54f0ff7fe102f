"""`pip install .` (not editable): the package holds its tasks and configs, and installs no top-level `tasks`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from tests.helpers import REPO


@pytest.mark.slow
def test_installed_copy_has_tasks_and_configs_inside_the_package(tmp_path):
    target = tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                            "--no-compile", "--target", str(target), str(REPO)],
                           capture_output=True, text=True, cwd=tmp_path)
    if build.returncode != 0 and "No module named" in build.stderr:
        pytest.skip(f"cannot build here: {build.stderr.strip().splitlines()[-1]}")
    assert build.returncode == 0, build.stderr
    assert not (target / "tasks").exists() and not (target / "configs").exists()  # no generic top-level names
    assert (target / "l2l_torch" / "tasks" / "stn.py").is_file()
    assert sorted(p.name for p in (target / "l2l_torch" / "configs").glob("*.yaml")) == \
        sorted(p.name for p in (REPO / "configs").glob("*.yaml"))
    assert (target / "l2l_torch" / "pretrained" / "small_fc_warmup_pes.pt").is_file()
    code = ("import l2l_torch, l2l_torch.cli as c, l2l_torch.tasks.stn; "
            "print(l2l_torch.__file__); print(c.config_path('fmnist_t1'))")
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    assert lines[0].startswith(str(target)) and lines[1] == str(target / "l2l_torch" / "configs" / "fmnist_t1.yaml")


def test_configs_are_the_users_tasks_and_recipes():
    """configs/ holds what a user runs: the study's tasks and the recipes of the shipped optimizers."""
    from l2l_torch.pretrained import list_pretrained

    names = {p.stem for p in (REPO / "configs").glob("*.yaml")}
    assert len(names) <= 15
    assert {"quadratic", "regression", "fmnist_t1", "fmnist_t2", "fmnist_t3", "cifar_conv", "cifar_convdense",
            "affnist"} <= names
    def warm_starts(node):
        if isinstance(node, dict):
            for k, v in node.items():
                yield from ([v] if k == "init_from" and v else warm_starts(v))
        elif isinstance(node, list):
            for v in node:
                yield from warm_starts(v)

    starts = [s for p in (REPO / "configs").glob("*.yaml") for s in warm_starts(yaml.safe_load(p.read_text()))]
    assert starts and all(s.startswith("l2l_torch/pretrained/") for s in starts), starts
    recommended = [n for n, m in list_pretrained().items() if m.get("recommended")]
    assert recommended == ["small_fc_warmup_pes"] and "small_fc_warmup_pes" in names
