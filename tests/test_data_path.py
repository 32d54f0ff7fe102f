"""Meta-training gets its data through the config's data: section: train.py hands the LightningDataModule to the
task family, whose tensors are then the DataModule's, on the training device."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from l2l_torch.data import TensorDataModule
from l2l_torch.tasks.base import DataTaskFamily
from tests.helpers import REPO, SHARED_DATA, needs_data, smoke_train


@pytest.fixture
def recorded(monkeypatch, tmp_path):
    """The (family, datamodule) pairs that train.py attaches, and how often each DataModule's setup() ran."""
    monkeypatch.setenv("L2L_DATA_DIR", str(SHARED_DATA))
    monkeypatch.setenv("L2L_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("L2L_OFFLINE", "1")
    attached, setups = [], {}
    attach, setup = DataTaskFamily.attach, TensorDataModule.setup

    def recording_attach(self, datamodule):
        attached.append((self, datamodule))
        return attach(self, datamodule)

    def counting_setup(self, stage=None):
        setups[id(self)] = setups.get(id(self), 0) + 1
        return setup(self, stage)

    monkeypatch.setattr(DataTaskFamily, "attach", recording_attach)
    monkeypatch.setattr(TensorDataModule, "setup", counting_setup)
    return attached, setups


@needs_data("FashionMNIST")
def test_fmnist_t1_trains_on_its_datamodule(recorded, tmp_path, capsys):
    from l2l_torch.data import FashionMNISTDataModule

    attached, setups = recorded
    smoke_train("fmnist_t1", tmp_path / "out", "--data.init_args.subset", "600")
    assert len(attached) == 1
    family, dm = attached[0]
    assert type(dm) is FashionMNISTDataModule and family.datamodule is dm and setups.get(id(dm), 0) >= 1
    assert dm.subset == 600 and family.subset == 600  # the data: override reached the family
    x = family.data()["train"][0]
    assert x is dm.tensors["train"][0] and x.device == family.device == dm.loaded_on
    assert x.shape[0] == 540  # 90% of the 600 images
    assert "data: FashionMNIST from" in capsys.readouterr().out


@needs_data("MNIST")
def test_affnist_trains_on_its_datamodule(recorded, tmp_path, capsys):
    from l2l_torch.affnist import AffNISTDataModule

    attached, setups = recorded
    smoke_train("affnist", tmp_path / "out", "--data.init_args.n_train", "16", "--data.init_args.n_val", "4",
                "--data.init_args.n_test", "4")
    assert len(attached) == 1
    family, dm = attached[0]
    assert type(dm) is AffNISTDataModule and family.datamodule is dm and setups.get(id(dm), 0) >= 1
    train = family.data.splits["train"]
    assert train is dm.data.splits["train"] and train.device == family.device == dm.loaded_on
    assert train.shape[0] == 16 and family.n_train == 16
    assert "data: affNIST digits generated from MNIST" in capsys.readouterr().out


def test_print_config_shows_the_data_section():
    r = subprocess.run([sys.executable, "train.py", "--task", "affnist", "--print_config"], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    config = yaml.safe_load(r.stdout)
    assert config["data"]["class_path"] == "l2l_torch.affnist.AffNISTDataModule"
    assert config["data"]["init_args"]["n_train"] == 2000


def test_a_mixture_takes_no_data_section(tmp_path, capsys):
    """The mixtures load each family's own dataset; a data: section there is one line, not a silent no-op."""
    import train
    from tests.test_cli_errors import fails

    spec = {"class_path": "l2l_torch.data.MNISTDataModule"}
    err = fails(train.main, ["--task", "hyper_adam_vision", "--out", tmp_path / "out", "--data", yaml.safe_dump(spec)],
                capsys)
    assert err.startswith("error: FamilyMixture takes no data: section")


@needs_data("MNIST")
def test_evaluate_builds_the_family_with_the_data_section(monkeypatch):
    """evaluate.py's family (task_family_from_config) is fed by the config's data: section too, and a --set of a
    data setting that data: also sets applies to both."""
    from l2l_torch.affnist import AffNISTDataModule
    from l2l_torch.cli import UserError, task_family_from_config

    monkeypatch.setenv("L2L_DATA_DIR", str(SHARED_DATA))
    family = task_family_from_config("affnist", {"n_train": 16, "n_val": 4, "n_test": 4})
    assert type(family.datamodule) is AffNISTDataModule and family.datamodule.n_train == 16
    assert family.sample(0).data.splits["train"] is family.datamodule.data.splits["train"]
    with pytest.raises(UserError, match="affNIST files are missing"):
        task_family_from_config("affnist", {"source": "mat", "data_dir": str(SHARED_DATA)})
