"""Feature-based learned optimizers (small_fc, rnnprop, hyper_adam): features, gradcheck, deployment parity, checkpoints."""

from __future__ import annotations

import copy
import inspect
import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from l2l_torch import LearnedOptimizer, param_groups_by_kind
from l2l_torch.checkpoint import load_learned_optimizer, save_learned_optimizer
from l2l_torch.learned_optimizers import (
    REGISTRY,
    HyperAdamOptimizer,
    LearnedOptimizerBase,
    LSTMOptimizer,
    RNNpropOptimizer,
    SmallFCOptimizer,
)
from l2l_torch.learned_optimizers.features import (
    DEFAULT_FEATURES,
    FeatureSet,
    segment_ids,
    segment_log_rms,
    segment_rms_normalize,
    segment_starts,
)
from l2l_torch.learned_optimizers.hyper_adam import DEFAULT_FEATURES as HYPER_ADAM_FEATURES
from l2l_torch.tasks.quadratic import QuadraticFamily
from tests.helpers import (
    gradcheck_meta_gradient,
    quadratic64,
    smoke_train,
    smoke_unroll,
    tiny_convnet,
    tiny_mlp,
)

#: the default features without the step embedding, and with the per-tensor log RMS of g and p
NO_TIME = [n for n in DEFAULT_FEATURES if not n.startswith("t")]
TENSOR_SCALE = [*DEFAULT_FEATURES, "log_rms_g", "log_rms_p"]
#: hyper_adam's features with the log size of each tensor, without (SIZE_ONLY) or with the log RMS of g and p
SIZE_ONLY = [n for n in HYPER_ADAM_FEATURES if not n.startswith("log_rms")] + ["log_numel"]
SIZE = [*HYPER_ADAM_FEATURES, "log_numel"]

ARCHS = [
    (SmallFCOptimizer, {"hidden": [8, 8]}),
    (SmallFCOptimizer, {"hidden": [8], "adam_skip": True}),
    (SmallFCOptimizer, {"hidden": [8], "features": TENSOR_SCALE}),
    (SmallFCOptimizer, {"hidden": [8], "features": ["t10", "adam0.5", "log_rms_p", "m0.9", "g"]}),
    (SmallFCOptimizer, {"hidden": [8], "warmup": 3}),
    (RNNpropOptimizer, {"hidden_size": 4, "num_layers": 1}),
    (HyperAdamOptimizer, {"hidden": [4]}),
    (HyperAdamOptimizer, {"hidden": [4], "warmup": 3}),
    (HyperAdamOptimizer, {"hidden": [], "features": SIZE_ONLY, "normalize": False}),
    (HyperAdamOptimizer, {"hidden": [4], "normalize": False, "features": SIZE, "weight_decay": 0.1}),
]


def _mag(cls, mag_mult: float = 0.5) -> dict[str, float]:
    """``{"mag_mult": mag_mult}`` for an architecture that has the option (hyper_adam's is fixed at 1)."""
    return {"mag_mult": mag_mult} if "mag_mult" in inspect.signature(cls).parameters else {}


def _perturbed(cls, **kw) -> LearnedOptimizerBase:
    """An optimizer with non-trivial outputs (magnitude head no longer zero, larger steps)."""
    torch.manual_seed(1)
    lopt = cls(step_mult=0.05, **_mag(cls), **kw)
    with torch.no_grad():
        for p in lopt.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return lopt


def _assert_same_updates(a: LearnedOptimizerBase, b: LearnedOptimizerBase) -> None:
    """``a`` and ``b`` make the same first update on a random two-tensor problem."""
    params = {"w": torch.randn(3, 4), "b": torch.randn(4)}
    grads = {k: torch.randn_like(v) for k, v in params.items()}
    ua, _ = a.step(params, grads, a.init_state(params))
    ub, _ = b.step(params, grads, b.init_state(params))
    for k in params:
        torch.testing.assert_close(ua[k], ub[k])


# ------------------------------------------------------------------ features
def test_segment_rms_normalize_unit_rms_per_tensor():
    x = torch.cat([torch.full((2, 3), 5.0), torch.randn(2, 4) * 1e-4, torch.zeros(2, 2)], dim=1)
    seg = segment_ids([3, 4, 2])
    y = segment_rms_normalize(x, seg, 3)
    rms = [y[:, a:b].pow(2).mean(1).sqrt() for a, b in ((0, 3), (3, 7))]
    for r in rms:
        torch.testing.assert_close(r, torch.ones(2), rtol=1e-4, atol=1e-4)
    assert torch.equal(y[:, 7:], torch.zeros(2, 2))  # an all-zero tensor stays zero, not NaN


def test_features_invariant_to_loss_scale_and_bias_corrected():
    fs = FeatureSet(NO_TIME)
    g = torch.randn(10)
    p = torch.randn(10)
    seg = segment_ids([6, 4])
    acc = fs.init_accumulators(10, g)
    x1, acc1 = fs(acc, g, p, seg, 2)
    x2, _ = fs(acc, 1000.0 * g, p, seg, 2)
    # the normalised features do not see the gradient's scale (param feature unchanged too)
    torch.testing.assert_close(x1, x2, rtol=1e-4, atol=1e-4)
    assert x1.shape == (fs.num_features, 10) and acc1.shape == (fs.num_accumulators, 10)
    assert torch.equal(acc1[-1], torch.ones(10))  # step count per coordinate
    # after one step, bias-corrected momenta equal g, so m/sqrt(v) is sign(g) (up to eps)
    k = len(fs.momentum_decays)
    adam = x1[2 + k: 2 + 2 * k]
    torch.testing.assert_close(adam[0].sign(), g.sign())
    assert torch.allclose(adam[0], adam[-1], atol=1e-5)


def test_features_do_not_modify_inputs():
    fs = FeatureSet()
    acc = torch.rand(fs.num_accumulators, 5)
    acc0 = acc.clone()
    fs(acc, torch.randn(5), torch.randn(5), segment_ids([5]), 1)
    assert torch.equal(acc, acc0)


def test_feature_set_rejects_bad_config():
    with pytest.raises(ValueError, match="decays"):
        FeatureSet(["m1.5"])
    with pytest.raises(ValueError, match="decays"):
        FeatureSet(["g"], rms_decay=1.0)
    with pytest.raises(ValueError, match="empty"):
        FeatureSet([])


# ------------------------------------------------------------------ meta-gradient
@pytest.mark.parametrize("cls,kw", ARCHS)
def test_gradcheck_meta_gradient_through_unroll(cls, kw):
    """float64 gradcheck of the meta-gradient of a 3-step unroll (exact second order) w.r.t. theta."""
    lopt = _perturbed(cls, **kw).double()
    assert gradcheck_meta_gradient(lopt, quadratic64())


# ------------------------------------------------------------------ deployment
_mlp, _convnet = tiny_mlp, tiny_convnet


def _kinds(model: nn.Module) -> dict[str, str]:
    return {f"{mn}.{pn}" if mn else pn: ("conv" if isinstance(m, nn.Conv2d) else "dense")
            for mn, m in model.named_modules() for pn, _ in m.named_parameters(recurse=False)}


@pytest.mark.parametrize("cls,kw", ARCHS)
@pytest.mark.parametrize("make_model,per_kind", [(_mlp, False), (_convnet, True)])
def test_parity_deployment_with_functional_step(cls, kw, make_model, per_kind, on_device):
    """LearnedOptimizer (per-parameter state, step count included) equals the functional step."""
    lopt = _perturbed(cls, per_kind=per_kind, **kw)
    model = make_model()
    ref = copy.deepcopy(model)
    params = {k: v.detach().clone() for k, v in ref.named_parameters()}
    state = lopt.init_state(params, _kinds(ref))
    opt = LearnedOptimizer(param_groups_by_kind(model), lopt=lopt)
    for t in range(5):
        shape = (6, 1, 6, 6) if per_kind else (6, 4)
        x = torch.randn(shape, generator=torch.Generator().manual_seed(t), device="cpu").to(on_device)
        p_req = {k: v.requires_grad_() for k, v in params.items()}
        grads = torch.autograd.grad(functional_call(ref, p_req, (x,)).pow(2).mean(), list(p_req.values()))
        with torch.no_grad():
            params, state = lopt.step({k: v.detach() for k, v in p_req.items()},
                                      dict(zip(p_req, grads, strict=True)), state)
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
        for k, v in model.named_parameters():
            torch.testing.assert_close(v.detach(), params[k], rtol=1e-5, atol=1e-6, msg=f"{k} at step {t}")
    # the step count survived in the per-parameter state
    first = next(iter(opt.state.values()))["coords"]
    assert torch.all(first[:, lopt.feats.num_accumulators - 1] == 5)


@pytest.mark.parametrize("cls,kw", ARCHS)
def test_checkpoint_round_trip(cls, kw, tmp_path):
    lopt = _perturbed(cls, **kw)
    save_learned_optimizer(lopt, tmp_path / "optimizer.pt", {"param_kinds": ["dense"]})
    loaded, meta = load_learned_optimizer(tmp_path / "optimizer.pt")
    assert type(loaded) is cls and REGISTRY[cls.arch_name] is cls and meta["param_kinds"] == ["dense"]
    _assert_same_updates(lopt, loaded)


@pytest.mark.parametrize("cls,kw", ARCHS)
def test_initial_steps_are_small(cls, kw):
    lopt = cls(**kw)  # default step_mult = mag_mult = 1e-3, magnitude head at zero
    params = {"w": torch.zeros(50, 20)}
    new, _ = lopt.step(params, {"w": 1e3 * torch.randn(50, 20)}, lopt.init_state(params))
    assert 0 < new["w"].abs().max() < 1e-2


@pytest.mark.parametrize("cls,kw", ARCHS)
def test_smoke_unroll(cls, kw):
    smoke_unroll(cls(**kw), QuadraticFamily().sample(0))


def test_smoke_train_small_fc(tmp_path):
    smoke_train("quadratic", tmp_path, "--model.lopt", "l2l_torch.learned_optimizers.SmallFCOptimizer")
    assert (tmp_path / "optimizer.pt").exists() or any(tmp_path.rglob("*.ckpt"))


def test_smoke_train_rnnprop(tmp_path):
    smoke_train("quadratic", tmp_path, "--model.lopt", "l2l_torch.learned_optimizers.RNNpropOptimizer",
                "--model.lopt.hidden_size", "4")


def test_adam_skip_starts_near_normalised_adam():
    """With adam_skip the initial direction is dominated by -m/sqrt(v): after one step, -sign(g)."""
    torch.manual_seed(0)
    lopt = SmallFCOptimizer(adam_skip=True, features=NO_TIME)
    params = {"w": torch.randn(40, 30)}
    g = torch.randn(40, 30)
    new, _ = lopt.step(params, {"w": g}, lopt.init_state(params))
    agree = ((new["w"] - params["w"]).sign() == -g.sign()).float().mean()
    assert agree > 0.9
    with pytest.raises(ValueError, match="m/sqrt"):
        SmallFCOptimizer(adam_skip=True, features=[n for n in DEFAULT_FEATURES if not n.startswith("adam")])


@pytest.mark.parametrize("cls", [SmallFCOptimizer, HyperAdamOptimizer])
def test_init_from_warm_start(cls, tmp_path):
    src = _perturbed(cls, hidden=[8])
    save_learned_optimizer(src, tmp_path / "a.pt")
    warm = cls(hidden=[8], step_mult=0.05, **_mag(cls), init_from=str(tmp_path / "a.pt"))
    for a, b in zip(src.parameters(), warm.parameters(), strict=True):
        assert torch.equal(a, b)
    assert "init_from" not in warm.config()
    other = _mag(cls, 0.3) or {"rms_decay": 0.9}  # an option with no weights behind it, but not a schedule
    with pytest.raises(Exception, match="differs"):
        cls(hidden=[8], **other, init_from=str(tmp_path / "a.pt"))


def test_lstm_warm_start_single_to_per_kind(tmp_path):
    torch.manual_seed(2)
    src = LSTMOptimizer()
    save_learned_optimizer(src, tmp_path / "single.pt")
    warm = LSTMOptimizer(per_kind=True, init_from=str(tmp_path / "single.pt"))
    for kind in ("conv", "dense"):  # both per-kind LSTMs start as the single one
        for a, b in zip(src.nets["all"].parameters(), warm.nets[kind].parameters(), strict=True):
            assert torch.equal(a, b)
    save_learned_optimizer(warm, tmp_path / "kinds.pt")
    with pytest.raises(Exception, match="no weights"):
        LSTMOptimizer(init_from=str(tmp_path / "kinds.pt"))
    with pytest.raises(Exception, match="differs"):
        LSTMOptimizer(per_kind=True, hidden_size=8, init_from=str(tmp_path / "single.pt"))


def test_lstm_warm_start_with_another_output_scale_makes_the_same_updates(tmp_path):
    torch.manual_seed(3)
    src = LSTMOptimizer(output_scale=0.1)
    save_learned_optimizer(src, tmp_path / "a.pt")
    warm = LSTMOptimizer(per_kind=True, output_scale=0.01, init_from=str(tmp_path / "a.pt"))
    torch.testing.assert_close(warm.nets["dense"].head.weight, 10 * src.nets["all"].head.weight)
    torch.testing.assert_close(warm.nets["conv"].cells[0].weight_ih, src.nets["all"].cells[0].weight_ih)  # unchanged
    _assert_same_updates(src, warm)
    with pytest.raises(Exception, match="differs"):  # other differences still refused
        LSTMOptimizer(output_scale=0.01, preprocess_p=5.0, init_from=str(tmp_path / "a.pt"))


def test_tensor_scale_features_are_the_log_rms_per_tensor():
    fs = FeatureSet([*NO_TIME, "log_rms_g", "log_rms_p", "t10"])
    assert len(fs.names) == fs.num_features and fs.names[-3:] == ["log_rms_g", "log_rms_p", "t10"]
    g = torch.cat([torch.full((3,), 2.0), torch.tensor([3.0, -4.0])])
    p = torch.cat([torch.full((3,), 0.5), torch.tensor([0.0, 0.0])])
    seg = segment_ids([3, 2])
    x, _ = fs(fs.init_accumulators(5, g), g, p, seg, 2)
    i = fs.names.index("log_rms_g")
    torch.testing.assert_close(x[i], torch.log(torch.tensor([2.0, 2, 2, 12.5**0.5, 12.5**0.5])))
    torch.testing.assert_close(x[i + 1, :3], torch.log(torch.full((3,), 0.5)))
    assert torch.isfinite(x).all()  # an all-zero tensor gives a large negative log, not -inf
    torch.testing.assert_close(segment_log_rms(g.unsqueeze(0), seg, 2)[0], x[i])


def test_tensor_size_feature_is_the_centred_log_numel_per_tensor():
    fs = FeatureSet([*NO_TIME, "log_rms_g", "log_rms_p", "log_numel", "t10"])
    assert fs.names[-4:] == ["log_rms_g", "log_rms_p", "log_numel", "t10"]
    g, p, seg = torch.randn(5), torch.randn(5), segment_ids([3, 2])
    x, _ = fs(fs.init_accumulators(5, g), g, p, seg, 2)
    log_n = torch.log(torch.tensor([3.0, 3, 3, 2, 2]))
    torch.testing.assert_close(x[fs.names.index("log_numel")], log_n - log_n.mean())  # centred over coordinates
    plain = FeatureSet([*NO_TIME, "log_rms_g", "log_rms_p", "t10"])  # the other rows: those of the set without it
    y, _ = plain(plain.init_accumulators(5, g), g, p, seg, 2)
    torch.testing.assert_close(x[[fs.names.index(n) for n in plain.names]], y)


def test_warm_start_into_more_features_computes_the_same_updates(tmp_path):
    src = _perturbed(SmallFCOptimizer, hidden=[8], adam_skip=True)
    save_learned_optimizer(src, tmp_path / "a.pt")
    warm = SmallFCOptimizer(hidden=[8], step_mult=0.05, mag_mult=0.5, adam_skip=True, features=TENSOR_SCALE,
                            init_from=str(tmp_path / "a.pt"))
    new_cols = [warm.feats.names.index(n) for n in ("log_rms_g", "log_rms_p")]
    assert torch.equal(warm.nets["all"].layers[0].weight[:, new_cols], torch.zeros(8, 2))
    assert torch.equal(warm.skips["all"][new_cols], torch.zeros(2))
    _assert_same_updates(src, warm)
    # and back: dropping the features again restores the original weights
    save_learned_optimizer(warm, tmp_path / "b.pt")
    back = SmallFCOptimizer(hidden=[8], step_mult=0.05, mag_mult=0.5, adam_skip=True, init_from=str(tmp_path / "b.pt"))
    for x, y in zip(src.parameters(), back.parameters(), strict=True):
        assert torch.equal(x, y)
    with pytest.raises(Exception, match="differs"):  # other differences still refused
        SmallFCOptimizer(hidden=[8], step_mult=0.05, mag_mult=0.3, features=TENSOR_SCALE,
                         init_from=str(tmp_path / "a.pt"))


@pytest.mark.parametrize("cls", [SmallFCOptimizer, RNNpropOptimizer])
def test_warmup_scales_step_t_by_t_over_warmup(cls, tmp_path):
    plain = _perturbed(cls)
    warm = cls(step_mult=0.05, mag_mult=0.5, warmup=4)
    warm.load_state_dict(plain.state_dict())
    params = {"w": torch.randn(3, 4), "b": torch.randn(4)}
    sp, sw = plain.init_state(params), warm.init_state(params)
    for t in range(1, 7):
        grads = {k: torch.randn_like(v) for k, v in params.items()}
        up, sp = plain.step(params, grads, sp)
        uw, sw = warm.step(params, grads, sw)
        for k in params:  # same params every step, so the same features: only the schedule differs
            torch.testing.assert_close(uw[k] - params[k], min(1.0, t / 4) * (up[k] - params[k]))
    # a schedule has no weights: warm starts may add or drop it, and it survives a checkpoint
    save_learned_optimizer(plain, tmp_path / "plain.pt")
    added = cls(step_mult=0.05, mag_mult=0.5, warmup=4)
    added.warm_start(str(tmp_path / "plain.pt"))
    save_learned_optimizer(added, tmp_path / "added.pt")
    loaded, _ = load_learned_optimizer(tmp_path / "added.pt")
    assert loaded.warmup == 4.0 and loaded.config()["warmup"] == 4.0
    assert plain.config()["warmup"] == 0.0
    dropped = cls(step_mult=0.05, mag_mult=0.5)
    dropped.warm_start(str(tmp_path / "added.pt"))
    _assert_same_updates(plain, dropped)
    with pytest.raises(ValueError, match="warmup"):
        cls(warmup=-1)


@pytest.mark.parametrize("cls", [SmallFCOptimizer, RNNpropOptimizer])
def test_warm_start_with_another_step_mult_rescales_every_update(cls, tmp_path):
    src = _perturbed(cls)  # step_mult 0.05
    save_learned_optimizer(src, tmp_path / "src.pt")
    scaled = cls(step_mult=0.0625, mag_mult=0.5)
    scaled.warm_start(str(tmp_path / "src.pt"))
    params = {"w": torch.randn(3, 4), "b": torch.randn(4)}
    s_src, s_scaled = src.init_state(params), scaled.init_state(params)
    for _ in range(3):
        grads = {k: torch.randn_like(v) for k, v in params.items()}
        u_src, s_src = src.step(params, grads, s_src)
        u_scaled, s_scaled = scaled.step(params, grads, s_scaled)
        for k in params:  # same params and grads, so the same features: only the output scale differs
            torch.testing.assert_close(u_scaled[k] - params[k], 1.25 * (u_src[k] - params[k]))
    save_learned_optimizer(scaled, tmp_path / "scaled.pt")
    assert load_learned_optimizer(tmp_path / "scaled.pt")[0].config()["step_mult"] == 0.0625


def test_hyper_adam_starts_at_normalised_adam_and_reads_only_tensor_inputs():
    """Untrained, hyper_adam steps every coordinate by -step_mult * sign(g) at step 1 (all Adam directions are
    sign(g) then, and the mix sums to 1); its network reads no per-coordinate input, so a trained one still
    moves every coordinate of a tensor by the same multiple of the mixed Adam direction."""
    lopt = HyperAdamOptimizer(step_mult=0.02)
    params = {"w": torch.randn(40, 30), "b": torch.randn(30)}
    grads = {k: torch.randn_like(v) for k, v in params.items()}
    new, _ = lopt.step(params, grads, lopt.init_state(params))
    for k in params:
        torch.testing.assert_close(new[k], params[k] - 0.02 * grads[k].sign())
    assert lopt.feats.names[:3] == ["adam0.5", "adam0.9", "adam0.99"]
    assert set(lopt.feats.names[3:]) == {"log_rms_g", "log_rms_p", "t1", "t3", "t10", "t30", "t100"}
    _perturbed_hyper = _perturbed(HyperAdamOptimizer, hidden=[4])
    x = torch.randn(lopt.feats.num_features, 1).expand(-1, 5).clone()
    x[:3] = torch.randn(3, 5)  # per-coordinate Adam directions, shared per-tensor context
    _, magnitude, _ = _perturbed_hyper._net("all", x, None)
    assert torch.allclose(magnitude, magnitude[:1].expand(5))
    with pytest.raises(ValueError, match="momentum decay"):
        HyperAdamOptimizer(features=["log_rms_g", "t10"])
    with pytest.raises(ValueError, match="per-tensor inputs only .* not 'g', 'm0.9'"):
        HyperAdamOptimizer(features=["g", "m0.9", "adam0.9"])
    with pytest.raises(ValueError, match="'p' come with weight_decay"):
        HyperAdamOptimizer(features=["p", "adam0.9"])


def test_hyper_adam_with_only_fixed_inputs_steps_by_tensor_size_and_time():
    """Without the log RMS inputs, with the log size: the step of a tensor depends on its size and the step count only,
    so two tensors of the same size get the same step multiple whatever their gradients and values."""
    lopt = _perturbed(HyperAdamOptimizer, hidden=[], features=SIZE_ONLY, normalize=False)
    assert lopt.feats.names[3:] == ["log_numel", "t1", "t3", "t10", "t30", "t100"] == lopt.config()["features"][3:]
    params = {"a": torch.randn(6), "b": 10 * torch.randn(6), "c": torch.randn(50)}
    grads = {k: torch.randn_like(v) * (1 + i) for i, (k, v) in enumerate(params.items())}
    state = lopt.init_state(params)
    x, _ = lopt.feats(state["acc"]["all"], torch.cat([grads[k] for k in params]),
                      torch.cat([params[k] for k in params]), state["seg"]["all"], 3)
    _, magnitude, _ = lopt._net("all", x, None)
    torch.testing.assert_close(magnitude[:12], magnitude[:1].expand(12))  # a and b: same size, same step
    assert not torch.allclose(magnitude[12], magnitude[0])
    with pytest.raises(ValueError, match="log_rms_min"):
        HyperAdamOptimizer(features=SIZE_ONLY, log_rms_min=-12.0)


@pytest.mark.parametrize("kw", [{"hidden": [4]}, {"hidden": [], "features": SIZE, "log_rms_min": -12.0}])
def test_hyper_adam_evaluates_its_network_once_per_tensor_as_if_per_coordinate(kw):
    """Given the segment ids, hyper_adam runs its network on one column per tensor and broadcasts: the same
    direction and magnitude as running it on every coordinate (``seg=None``), in float64 to the last bits."""
    lopt = _perturbed(HyperAdamOptimizer, **kw).double()
    params = {"w": torch.randn(7, 5, dtype=torch.float64), "e": torch.zeros(0, dtype=torch.float64),
              "b": torch.zeros(5, dtype=torch.float64), "v": torch.randn(3, dtype=torch.float64)}
    grads = {k: torch.randn_like(v) for k, v in params.items()}
    state = lopt.init_state(params)
    seg, n = state["seg"]["all"], state["nseg"]["all"]
    x, _ = lopt.feats(state["acc"]["all"], torch.cat([grads[k].reshape(-1) for k in params]),
                      torch.cat([params[k].reshape(-1) for k in params]), seg, n)
    torch.testing.assert_close(segment_starts(seg, n), torch.tensor([0, 42, 35, 40]))  # (the empty one: the last)
    for a, b in zip(lopt._net("all", x, None, seg, n)[:2], lopt._net("all", x, None)[:2], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_hyper_adam_log_rms_min_clamps_only_the_log_rms_inputs():
    lopt = _perturbed(HyperAdamOptimizer, hidden=[], log_rms_min=-12.0)
    free = _perturbed(HyperAdamOptimizer, hidden=[])
    x = torch.randn(lopt.feats.num_features, 4)
    x[3:5] = torch.tensor([[-34.5, -34.5, -3.0, -3.0], [-2.0, -2.0, -40.0, -1.0]])  # log RMS of g, of p
    clamped = x.clone()
    clamped[3:5] = clamped[3:5].clamp_min(-12.0)
    for a, b in zip(lopt._net("all", x, None)[:2], free._net("all", clamped, None)[:2]):
        torch.testing.assert_close(a, b)
    assert lopt.config()["log_rms_min"] == -12.0 and free.config()["log_rms_min"] is None


def test_hyper_adam_weight_decay_starts_at_adamw():
    """Untrained, with one momentum decay and normalize=False, hyper_adam is Adam; with ``weight_decay`` it is
    AdamW at that decay (decoupled: ``-lr * wd * p``), step for step; the decay is a learned per-tensor output."""
    torch.manual_seed(0)
    lopt = HyperAdamOptimizer(step_mult=0.01, features=["adam0.9", "log_rms_g", "log_rms_p", "t10"], normalize=False,
                              weight_decay=0.3)
    assert lopt.feats.names[:2] == ["p", "adam0.9"] and lopt.config()["weight_decay"] == 0.3
    params = {"w": torch.randn(6, 5), "b": torch.randn(5)}
    ref = {k: v.clone().requires_grad_() for k, v in params.items()}
    adamw = torch.optim.AdamW(ref.values(), lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.3)
    state = lopt.init_state(params)
    for _ in range(5):
        grads = {k: torch.randn_like(v) for k, v in params.items()}
        params, state = lopt.step(params, grads, state)
        for k, p in ref.items():
            p.grad = grads[k].clone()
        adamw.step()
    for k in params:
        torch.testing.assert_close(params[k], ref[k].detach(), rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # the decay output moves each tensor's decay: a larger one shrinks the values more
        lopt.nets["all"].layers[-1].bias[-1] = math.log(10.0)
    p0 = {"w": torch.ones(2, 2)}
    zero = {"w": torch.zeros(2, 2)}
    assert lopt.step(p0, zero, lopt.init_state(p0))[0]["w"][0, 0] < 1 - 0.01 * 0.3 * 5
    with pytest.raises(ValueError, match="normalize=False"):
        HyperAdamOptimizer(weight_decay=0.1)
