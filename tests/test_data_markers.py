"""tests/helpers.py: one dataset variable (L2L_DATA_DIR) and the skip marker of tests that read a dataset."""

import os
import subprocess
import sys

from l2l_torch.cli import available_tasks, load_config
from l2l_torch.data import DATASETS
from tests import helpers
from tests.helpers import REPO, config_params, data_folders, missing_data


def _family(cls: str, **init) -> dict:
    return {"class_path": f"some.module.{cls}", "init_args": init}


def test_missing_data_names_the_folder_and_the_variable(tmp_path):
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    (tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").write_bytes(b"x")
    (tmp_path / "FashionMNIST").mkdir()  # empty: as good as missing
    reason = missing_data("FashionMNIST", "MNIST", root=tmp_path)
    assert reason.startswith("needs FashionMNIST/ under $L2L_DATA_DIR (")
    assert str(tmp_path) in reason and "set L2L_DATA_DIR to a folder with the torchvision dataset files" in reason
    assert "MNIST/ under" not in reason.replace("FashionMNIST/", "")
    assert missing_data("MNIST", root=tmp_path) is None


def test_needs_data_skips_exactly_when_a_folder_is_missing(tmp_path, monkeypatch):
    (tmp_path / "MNIST").mkdir()
    (tmp_path / "MNIST" / "f").write_bytes(b"x")
    monkeypatch.setattr(helpers, "SHARED_DATA", tmp_path)
    present, absent = helpers.needs_data("MNIST"), helpers.needs_data("MNIST", "CIFAR-10-images")
    assert present.name == absent.name == "skipif"
    assert present.args == (False,) and absent.args == (True,)
    assert "needs CIFAR-10-images/ under $L2L_DATA_DIR" in absent.kwargs["reason"]


def _shared_data_in_a_fresh_process(env: dict) -> str:
    code = "from tests.helpers import SHARED_DATA; print(SHARED_DATA)"
    base = {k: v for k, v in os.environ.items() if k not in ("L2L_DATA_DIR", "L2L_SHARED_DATA")}
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**base, **env}, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_tests_read_the_library_variable_and_default_next_to_the_repo(tmp_path):
    assert _shared_data_in_a_fresh_process({"L2L_DATA_DIR": str(tmp_path)}) == str(tmp_path)
    default = str(REPO.parent / "shared" / "data")
    assert _shared_data_in_a_fresh_process({}) == default
    assert _shared_data_in_a_fresh_process({"L2L_SHARED_DATA": str(tmp_path)}) == default  # the old name is gone


def test_data_folders_of_each_family_kind():
    assert data_folders(_family("ImageClassificationFamily")) == ["FashionMNIST"]
    assert data_folders(_family("ImageClassificationFamily", dataset="cifar10")) == ["CIFAR-10-images"]
    assert data_folders(_family("ImageClassificationFamily", dataset="cifar10"), written_by_test=("cifar10",)) == []
    assert data_folders(_family("ImageClassificationFamily", data_dir="/elsewhere")) == []
    assert data_folders(_family("MLPMixtureFamily")) == ["FashionMNIST", "MNIST"]
    assert data_folders(_family("MLPMixtureFamily", datasets=["mnist"])) == ["MNIST"]
    assert data_folders(_family("STNFamily")) == ["MNIST"]
    assert data_folders(_family("CNNMixtureFamily")) == ["CIFAR-10-images", "FashionMNIST", "MNIST"]
    assert data_folders(_family("AugmentedFamily", family=_family("CNNMixtureFamily", datasets=["mnist"]))) == ["MNIST"]
    assert data_folders(_family("STNFamily", source="mat")) == ["affNIST"]
    assert data_folders(_family("QuadraticFamily", dim=3)) == []
    mix = _family("FamilyMixture", families=[_family("STNFamily"), _family("ImageClassificationFamily", dataset="cifar10"),
                                             _family("QuadraticFamily")])
    assert data_folders(mix) == ["CIFAR-10-images", "MNIST"]
    assert data_folders(mix, written_by_test=("cifar10",)) == ["MNIST"]


def test_every_config_is_marked_with_the_folders_it_reads():
    tasks = available_tasks()
    params = config_params(tasks)
    assert [p.values[0] for p in params] == tasks
    known = {info.folder for info in DATASETS.values()} | {"affNIST"}
    for task in tasks:
        assert set(data_folders(load_config(task)["model"]["task"])) <= known, task
    assert data_folders(load_config("quadratic")["model"]["task"]) == []
    assert data_folders(load_config("fmnist_t1")["model"]["task"]) == ["FashionMNIST"]


def test_a_marked_test_skips_with_the_reason_when_the_folder_is_empty(tmp_path):
    (tmp_path / "test_marked.py").write_text(
        "from tests.helpers import needs_data\n\n\n@needs_data('FashionMNIST')\ndef test_reads():\n    assert False\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**os.environ, "L2L_DATA_DIR": str(empty), "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(tmp_path / "test_marked.py")],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 skipped" in r.stdout
    assert f"needs FashionMNIST/ under $L2L_DATA_DIR ({empty}); set L2L_DATA_DIR" in r.stdout


def test_no_file_reads_the_old_variable():
    """One dataset variable: nothing in the package, tests or scripts reads the old test-only name."""
    var = "L2L_" + "SHARED_DATA"
    hits = [str(p.relative_to(REPO)) for d in ("l2l_torch", "tests", "scripts", "benchmarks", "tasks")
            for p in (REPO / d).rglob("*") if p.suffix in (".py", ".sh") and p.name != "test_data_markers.py"
            and var in p.read_text(errors="ignore")]
    assert hits == []
