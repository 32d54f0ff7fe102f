"""Checkpoint format 2: the whole configuration with features by name; format-1 files and configurations
(``migrate_config``) read as they always did; one reader for learned-optimizer files and Lightning checkpoints."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch

from l2l_torch import CheckpointError, LSTMOptimizer, load_learned_optimizer, save_learned_optimizer
from l2l_torch.checkpoint import VERSION, migrate_config, read_checkpoint, read_learned_optimizer
from l2l_torch.export import export
from l2l_torch.learned_optimizers import REGISTRY, HyperAdamOptimizer, RNNpropOptimizer, SmallFCOptimizer
from l2l_torch.learned_optimizers.features import DEFAULT_FEATURES, FeatureSet, segment_ids
from l2l_torch.reliability import check_resume_checkpoint
from tests.data.make_pretrained_reference import MODELS, PRETRAINED, run
from tests.helpers import REPO

DATA = Path(__file__).resolve().parent / "data"
#: format-1 copies of two shipped optimizers, as they were shipped before format 2
V1_FILES = sorted(DATA.glob("v1_*.pt"))
SMALL_FC_TS = ["g", "p", "m0.5", "m0.9", "m0.99", "adam0.5", "adam0.9", "adam0.99", "rsqrt", "log_rms_g", "log_rms_p",
               "t1", "t3", "t10", "t30"]
HYPER_SIZE = ["adam0.5", "adam0.9", "adam0.99", "log_rms_g", "log_rms_p", "log_numel", "t1", "t3", "t10", "t30",
              "t100"]


# ---------------------------------------------------------------- constructors and the config they store
@pytest.mark.parametrize("arch", sorted(REGISTRY))
def test_constructors_take_at_most_10_arguments_and_config_holds_all_of_them(arch):
    cls = REGISTRY[arch]
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    assert len(params) <= 10, (arch, params)
    # the whole configuration, defaults included: every argument but the warm start (and the LSTM's
    # recompute_gates, which changes memory, not numbers)
    assert sorted(cls().config()) == sorted(set(params) - {"init_from", "recompute_gates"})


def test_a_version_2_file_stores_every_argument_and_the_features_by_name(tmp_path):
    save_learned_optimizer(SmallFCOptimizer(features=["t10", "adam0.9", "g"]), tmp_path / "a.pt")
    raw = torch.load(tmp_path / "a.pt", weights_only=True)
    assert raw["version"] == VERSION == 2
    assert raw["config"] == {"hidden": [32, 32], "step_mult": 1e-3, "mag_mult": 1e-3, "per_kind": False,
                             "features": ["g", "adam0.9", "t10"], "adam_skip": False, "warmup": 0.0}


# ---------------------------------------------------------------- features by name
def test_feature_names_come_in_canonical_order_and_spelling():
    fs = FeatureSet(["t10.0", "log_numel", "adam.9", "rsqrt", "m0.99", "p", "log_rms_p", "m0.9", "g", "t1"])
    assert fs.names == ["g", "p", "m0.9", "m0.99", "adam0.9", "rsqrt", "log_rms_p", "log_numel", "t1", "t10"]
    assert fs.momentum_decays == (0.9, 0.99) and fs.time_taus == (1.0, 10.0)
    assert FeatureSet(list(reversed(DEFAULT_FEATURES))).names == list(DEFAULT_FEATURES)
    assert SmallFCOptimizer(features=list(reversed(SMALL_FC_TS))).config()["features"] == SMALL_FC_TS


@pytest.mark.parametrize("features,match", [
    (["g", "grad"], "unknown feature 'grad'"),
    (["m"], "unknown feature 'm'"),
    (["tnan"], "unknown feature"),
    (["m1"], "momentum decays must be in"),
    (["adam-0.1"], "momentum decays must be in"),
    (["t0"], "time scale must be > 0"),
    (["g", "p", "g"], "'g' named more than once"),
    (["m0.9", "m0.90"], "'m0.9' named more than once"),
    ([], "empty"),
    ("g", "a list of feature names"),
])
def test_bad_feature_names_are_refused(features, match):
    with pytest.raises(ValueError, match=match):
        FeatureSet(features)
    with pytest.raises(ValueError, match=match):
        SmallFCOptimizer(features=features)


def test_momenta_and_adam_directions_may_name_different_decays():
    """["m0.9", "adam0.5"]: one momentum kept per decay either names, each feature the formula of its own decay."""
    fs = FeatureSet(["adam0.5", "m0.9", "rsqrt"], rms_decay=0.99, normalize=False)
    assert fs.names == ["m0.9", "adam0.5", "rsqrt"] and fs.momentum_decays == (0.5, 0.9) and fs.num_accumulators == 4
    gs = [torch.tensor([1.0, -2.0, 0.5]), torch.tensor([3.0, 1.0, -0.5])]
    acc = fs.init_accumulators(3, gs[0])
    for g in gs:
        x, acc = fs(acc, g, torch.zeros(3), segment_ids([3]), 1)
    g1, g2 = gs

    def ema(b):  # bias-corrected EMA of (g1, g2) at decay b
        return (b * (1 - b) * g1 + (1 - b) * g2) / (1 - b ** 2)

    v = (0.99 * 0.01 * g1 ** 2 + 0.01 * g2 ** 2) / (1 - 0.99 ** 2)
    rsqrt = 1 / (v.sqrt() + 1e-8)
    torch.testing.assert_close(x, torch.stack([ema(0.9), ema(0.5) * rsqrt, rsqrt]))
    # the rows of a subset are those rows of a larger set (normalised row by row, per tensor)
    big, small = FeatureSet(DEFAULT_FEATURES), FeatureSet(["p", "m0.99", "adam0.5", "t30"])
    g, p, seg = torch.randn(7), torch.randn(7), segment_ids([4, 3])
    xb, _ = big(big.init_accumulators(7, g), g, p, seg, 2)
    xs, _ = small(small.init_accumulators(7, g), g, p, seg, 2)
    torch.testing.assert_close(xs, xb[[big.names.index(n) for n in small.names]])


# ---------------------------------------------------------------- migrate_config
def test_migrate_config_of_a_stored_version_1_config():
    old = torch.load(DATA / "v1_small_fc_warmup_pes.pt", weights_only=True)["config"]
    assert migrate_config("small_fc", old) == {"per_kind": False, "step_mult": 0.01, "mag_mult": 0.3,
                                               "features": SMALL_FC_TS, "hidden": [32, 32], "adam_skip": False,
                                               "warmup": 10.0}
    old = torch.load(DATA / "v1_hyper_adam_fmnist_t1.pt", weights_only=True)["config"]
    assert migrate_config("hyper_adam", old) == {
        "hidden": [16, 16], "step_mult": 0.01, "per_kind": False,
        "features": [n for n in HYPER_SIZE if not n.startswith("log_rms")], "rms_decay": 0.9, "warmup": 10.0,
        "normalize": False}


def test_migrate_config_of_yaml_init_args():
    """A YAML's init_args name only what differs from the defaults (and may hold init_from): what they leave out
    keeps its default, which for the features is the default of format 1."""
    yaml_args = {"hidden": [32, 32], "step_mult": 0.01, "mag_mult": 0.3, "time_taus": [1, 3, 10, 30],
                 "tensor_scale": True, "warmup": 10, "init_from": "l2l_torch/pretrained/small_fc_warmup.pt"}
    assert migrate_config("l2l_torch.learned_optimizers.SmallFCOptimizer", yaml_args) == {
        "hidden": [32, 32], "step_mult": 0.01, "mag_mult": 0.3, "features": SMALL_FC_TS, "warmup": 10,
        "init_from": "l2l_torch/pretrained/small_fc_warmup.pt"}
    gradient_only = {"hidden": [32, 32], "use_param": False, "use_momentum": False, "use_adam": False,
                     "use_rsqrt": False, "time_taus": []}
    assert migrate_config("SmallFCOptimizer", gradient_only) == {"hidden": [32, 32], "features": ["g"]}
    assert migrate_config("rnnprop", {"hidden_size": 20, "time_taus": [1, 3, 10, 30]})["features"] == \
        [n for n in DEFAULT_FEATURES if n != "t100"]
    hyper = {"hidden": [16, 16], "step_mult": 0.01, "mag_mult": 1.0, "warmup": 10, "normalize": False,
             "tensor_size": True, "weight_decay": 0.3}
    assert migrate_config("HyperAdamOptimizer", hyper) == {"hidden": [16, 16], "step_mult": 0.01, "warmup": 10,
                                                           "normalize": False, "features": HYPER_SIZE,
                                                           "weight_decay": 0.3}
    # nothing about features: the default features, no entry
    assert migrate_config("small_fc", {"hidden": [8], "init_from": "a.pt"}) == {"hidden": [8], "init_from": "a.pt"}
    lstm = {"hidden_size": 20, "preprocess": "none", "output_scale": 0.01}
    assert migrate_config("lstm", lstm) == lstm and migrate_config("LSTMOptimizer", lstm) == lstm


@pytest.mark.parametrize("arch,config", [
    ("small_fc", {"hidden": [8], "tensor_scale": True, "time_taus": [10]}),
    ("small_fc", {"features": ["g", "t10"], "adam_skip": False}),
    ("hyper_adam", {"tensor_scale": False, "tensor_size": True, "mag_mult": 1.0, "init_decay": 0.9}),
    ("rnnprop", {"use_rsqrt": False}),
    ("lstm", {"normalization": "layer"}),
])
def test_migrate_config_is_idempotent_and_builds_the_same_optimizer(arch, config):
    new = migrate_config(arch, config)
    assert migrate_config(arch, new) == new
    assert REGISTRY[arch](**new).config() == REGISTRY[arch](**migrate_config(arch, new)).config()


@pytest.mark.parametrize("arch,config,match", [
    ("small_fc", {"features": ["g"], "tensor_scale": True}, "replaces tensor_scale"),
    ("small_fc", {"normalize": False}, "normalize=False is no longer an option"),
    ("rnnprop", {"rms_decay": 0.9}, "rms_decay=0.9 is no longer an option"),
    ("hyper_adam", {"mag_mult": 0.5}, "mag_mult=0.5 is no longer an option .*fixed at 1.0"),
    ("hyper_adam", {"init_decay": 0.5}, "init_decay"),
    ("small_fc", {"time_taus": [10, 1]}, "not strictly ascending"),
    ("hyper_adam", {"momentum_decays": [0.9, 0.9]}, "not strictly ascending"),
])
def test_migrate_config_refuses_what_it_cannot_convert(arch, config, match):
    with pytest.raises(ValueError, match=match):
        migrate_config(arch, config)


# ---------------------------------------------------------------- version 1 files
@pytest.mark.parametrize("v1", V1_FILES, ids=lambda p: p.stem)
def test_a_version_1_file_gives_the_same_optimizer_as_its_version_2_file(v1):
    raw1 = torch.load(v1, weights_only=True)
    v2 = PRETRAINED / f"{v1.stem.removeprefix('v1_')}.pt"
    raw2 = torch.load(v2, weights_only=True)
    assert raw1["version"] == 1 and raw2["version"] == 2
    a, meta_a = load_learned_optimizer(v1)
    b, meta_b = load_learned_optimizer(v2)
    assert type(a) is type(b) and a.config() == b.config() == raw2["config"] and meta_a == meta_b == raw1["meta"]
    assert a.state_dict().keys() == b.state_dict().keys() == raw1["state_dict"].keys()
    for k, w in raw1["state_dict"].items():
        assert torch.equal(a.state_dict()[k], w) and torch.equal(b.state_dict()[k], w), k
    assert read_checkpoint(v1)["config"] == migrate_config(raw1["arch"], raw1["config"])
    for model in MODELS:  # and the same updates
        for k, w in run(v1, model).items():
            torch.testing.assert_close(w, run(v2, model)[k])


def test_every_committed_research_optimizer_still_loads(tmp_path):
    """The research folders' optimizer.pt files (most in format 1, written before format 2; some are warm starts of
    configs): each loads, and written again in format 2 it is the same optimizer."""
    files = sorted((REPO / "research" / "experiments").rglob("optimizer.pt"))
    assert len(files) > 50
    versions = set()
    for f in files:
        versions.add(torch.load(f, weights_only=True)["version"])
        lopt, meta = load_learned_optimizer(f)
        save_learned_optimizer(lopt, tmp_path / "v2.pt", meta)
        again, _ = load_learned_optimizer(tmp_path / "v2.pt")
        assert again.config() == lopt.config(), f
    assert 1 in versions and versions <= {1, 2}  # the format-1 reader is exercised; no unknown format


# ---------------------------------------------------------------- Lightning checkpoints: one reader
def _lightning_checkpoint(path: Path, arch: str, config: dict, weights: dict) -> Path:
    """A Lightning checkpoint as meta-training writes it, with only what the readers use."""
    torch.save({"state_dict": {f"lopt.{k}": v for k, v in weights.items()} | {"other.x": torch.zeros(1)},
                "pytorch-lightning_version": "2.5", "global_step": 7,
                "l2l": {"lopt_arch": arch, "lopt_config": config, "describe": {"task": {"name": "tiny"}}}}, path)
    return path


def test_a_lightning_checkpoint_with_a_version_1_config_reads_resumes_exports_and_warm_starts(tmp_path):
    v1 = torch.load(DATA / "v1_small_fc_warmup_pes.pt", weights_only=True)
    ckpt = _lightning_checkpoint(tmp_path / "last.ckpt", "small_fc", v1["config"], v1["state_dict"])
    shipped, _ = load_learned_optimizer(PRETRAINED / "small_fc_warmup_pes.pt")
    lopt, meta = read_learned_optimizer(ckpt)
    assert lopt.config() == shipped.config() and meta == {"task": {"name": "tiny"}, "global_step": 7}
    for k, w in v1["state_dict"].items():
        assert torch.equal(lopt.state_dict()[k], w)
    # resuming with the configuration in its new form: the same architecture
    same = SmallFCOptimizer(hidden=[32, 32], step_mult=0.01, mag_mult=0.3, features=SMALL_FC_TS, warmup=10)
    assert check_resume_checkpoint(ckpt, same)["lopt_arch"] == "small_fc"
    with pytest.raises(Exception, match="another learned-optimizer architecture .*features"):
        check_resume_checkpoint(ckpt, SmallFCOptimizer(hidden=[32, 32], step_mult=0.01, mag_mult=0.3, warmup=10))
    export(ckpt, tmp_path / "exported.pt")
    assert torch.load(tmp_path / "exported.pt", weights_only=True)["config"] == shipped.config()
    warm = SmallFCOptimizer(hidden=[32, 32], step_mult=0.01, mag_mult=0.3, features=SMALL_FC_TS,
                            init_from=str(ckpt))  # a warm start may read a Lightning checkpoint
    for k, w in v1["state_dict"].items():
        assert torch.equal(warm.state_dict()[k], w)


def test_read_learned_optimizer_errors(tmp_path):
    ckpt = _lightning_checkpoint(tmp_path / "a.ckpt", "rnnprop", {"hidden_size": 4}, {})
    with pytest.raises(CheckpointError, match="weights do not match architecture 'rnnprop'"):
        read_learned_optimizer(ckpt)
    weights = RNNpropOptimizer(hidden_size=4).state_dict()
    ckpt = _lightning_checkpoint(tmp_path / "b.ckpt", "rnnprop", {"hidden_size": 4}, weights)
    with pytest.raises(CheckpointError, match="holds a 'rnnprop' optimizer, expected 'lstm'"):
        read_learned_optimizer(ckpt, expect_arch="lstm")
    with pytest.raises(CheckpointError, match="holds a 'rnnprop' optimizer, expected 'lstm'"):
        LSTMOptimizer(init_from=str(ckpt))
    hyper = _lightning_checkpoint(tmp_path / "c.ckpt", "hyper_adam", {"mag_mult": 2.0},
                                  HyperAdamOptimizer().state_dict())
    with pytest.raises(CheckpointError, match=r"c.ckpt: hyper_adam: mag_mult=2.0 is no longer an option"):
        read_learned_optimizer(hyper)
    torch.save({"state_dict": {}, "pytorch-lightning_version": "2.5"}, tmp_path / "d.ckpt")
    with pytest.raises(CheckpointError, match="not of a l2l_torch meta-training run"):
        read_learned_optimizer(tmp_path / "d.ckpt")


# ---------------------------------------------------------------- YAML configurations
def _lopt_sections(node):
    """The ``lopt`` class_path/init_args sections of a loaded YAML."""
    if isinstance(node, dict):
        if "learned_optimizers" in str(node.get("class_path", "")):
            yield node["class_path"], node.get("init_args") or {}
        for v in node.values():
            yield from _lopt_sections(v)
    elif isinstance(node, list):
        for v in node:
            yield from _lopt_sections(v)


def test_every_yaml_learned_optimizer_converts_and_builds():
    """``migrate_config`` turns the ``lopt.init_args`` of every config (``configs/``, the research folders) into
    arguments the optimizer takes, warm starts (``init_from``) included: the same optimizer, whichever form the
    YAML is written in."""
    import importlib

    import yaml

    files = sorted((REPO / "configs").glob("*.yaml")) + sorted((REPO / "research" / "experiments").rglob("*.yaml"))
    built = 0
    for f in files:
        for class_path, init_args in _lopt_sections(yaml.safe_load(f.read_text())):
            module, name = class_path.rsplit(".", 1)
            cls = getattr(importlib.import_module(module), name)
            args = migrate_config(class_path, init_args)
            assert migrate_config(cls.arch_name, args) == args, f
            cls(**args)
            built += 1
    assert built > 50


def test_config_is_a_copy():
    lopt = SmallFCOptimizer()
    lopt.config()["features"].append("log_numel")
    assert "log_numel" not in lopt.feats.names and lopt.config()["features"] == list(DEFAULT_FEATURES)
