"""LearnedOptimizer (deployment): parity with the functional step, state_dict, param groups, Lightning."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn
from torch.func import functional_call

import l2l_torch
from l2l_torch import LearnedOptimizer, LSTMOptimizer, param_groups_by_kind, save_learned_optimizer
from tests.helpers import tiny_convnet, tiny_mlp

_mlp, _convnet = tiny_mlp, tiny_convnet


def _batch(model: nn.Module, t: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(100 + t)
    shape = (6, 1, 6, 6) if isinstance(model[0], nn.Conv2d) else (6, 4)
    return torch.randn(shape, generator=g, device="cpu").to(torch.get_default_device())


def _loss(out: torch.Tensor) -> torch.Tensor:
    return out.pow(2).mean()


def _lopt(**kw) -> LSTMOptimizer:
    torch.manual_seed(1)
    lopt = LSTMOptimizer(hidden_size=8, **kw)
    with torch.no_grad():  # a non-trivial head so the updates differ per coordinate
        for p in lopt.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return lopt


def _kinds(model: nn.Module) -> dict[str, str]:
    return {f"{mn}.{pn}" if mn else pn: ("conv" if isinstance(m, nn.Conv2d) else "dense")
            for mn, m in model.named_modules() for pn, _ in m.named_parameters(recurse=False)}


@pytest.mark.parametrize("make_model,kw", [
    (_mlp, {}),
    (_mlp, {"preprocess": "log_sign", "normalization": "layer"}),
    (_convnet, {"per_kind": True}),
    (_convnet, {"per_kind": True, "normalization": "batch"}),
])
def test_parity_with_functional_step(make_model, kw, on_device):
    lopt = _lopt(**kw)
    model = make_model()
    ref = copy.deepcopy(model)
    # functional path (what meta-training runs)
    params = {k: v.detach().clone() for k, v in ref.named_parameters()}
    state = lopt.init_state(params, _kinds(ref))
    # deployment path
    opt = LearnedOptimizer(param_groups_by_kind(model), lopt=lopt)
    for t in range(4):
        x = _batch(model, t)
        p_req = {k: v.requires_grad_() for k, v in params.items()}
        grads = torch.autograd.grad(_loss(functional_call(ref, p_req, (x,))), list(p_req.values()))
        with torch.no_grad():
            params, state = lopt.step({k: v.detach() for k, v in p_req.items()}, dict(zip(p_req, grads)), state)
        opt.zero_grad()
        _loss(model(x)).backward()
        opt.step()
        for k, v in model.named_parameters():
            torch.testing.assert_close(v.detach(), params[k], rtol=1e-5, atol=1e-6, msg=f"{k} at step {t}")
    assert all(p.grad is None for p in lopt.parameters())  # no autograd graph through theta


def test_dense_only_checkpoint_rejects_conv_params():
    lopt = LSTMOptimizer(hidden_size=4, per_kind=True)
    del lopt.nets["conv"]  # a dense-only optimizer
    model = _convnet()
    with pytest.raises(ValueError, match="kind 'conv'"):  # at construction, not at the first step
        LearnedOptimizer(param_groups_by_kind(model), lopt=lopt)


def test_untrained_kind_network_warns(tmp_path):
    """A per-kind checkpoint meta-trained on dense parameters only has a random conv network."""
    save_learned_optimizer(_lopt(per_kind=True), tmp_path / "dense.pt", {"param_kinds": ["dense"]})
    LearnedOptimizer(param_groups_by_kind(_mlp()), checkpoint=tmp_path / "dense.pt")  # fine: dense only
    with pytest.warns(UserWarning, match="'conv' parameters was never meta-trained"):
        LearnedOptimizer(param_groups_by_kind(_convnet()), checkpoint=tmp_path / "dense.pt")


def _train(model, opt, steps, start=0):
    for t in range(start, start + steps):
        def closure(t=t):
            opt.zero_grad()
            loss = _loss(model(_batch(model, t)))
            loss.backward()
            return loss
        opt.step(closure)


@pytest.mark.parametrize("make_model,kw", [(_mlp, {}), (_convnet, {"per_kind": True})])
def test_state_dict_round_trip(make_model, kw, tmp_path):
    lopt = _lopt(**kw)
    model = make_model()
    opt = LearnedOptimizer(param_groups_by_kind(model), lopt=lopt)
    _train(model, opt, 3)
    # save model + optimizer, as a user's training script would, and reload with weights_only
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, tmp_path / "ckpt.pt")
    saved = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    _train(model, opt, 1, start=3)  # the uninterrupted run's next update
    expected = [p.detach().clone() for p in model.parameters()]

    model2 = make_model()
    model2.load_state_dict(saved["model"])
    opt2 = LearnedOptimizer(param_groups_by_kind(model2), lopt=_lopt(**kw))
    opt2.load_state_dict(saved["opt"])
    _train(model2, opt2, 1, start=3)
    for a, b in zip(model2.parameters(), expected):
        torch.testing.assert_close(a.detach(), b)


def test_state_dict_views_survive_torch_save():
    """The per-parameter states are views of one tensor; they round-trip through weights_only loading."""
    model = _mlp()
    opt = LearnedOptimizer(model.parameters(), lopt=_lopt())
    _train(model, opt, 2)
    sd = opt.state_dict()
    assert all(s["coords"]._base is not None for s in sd["state"].values())
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    opt2 = LearnedOptimizer(model.parameters(), lopt=_lopt())
    opt2.load_state_dict(loaded)
    for p in model.parameters():
        torch.testing.assert_close(opt2.state[p]["coords"], opt.state[p]["coords"])
    _train(model, opt2, 1, start=2)


def test_fresh_state_differs_from_resumed():
    """The round-trip test can fail: a fresh optimizer (no state) gives a different update."""
    model = _mlp()
    opt = LearnedOptimizer(model.parameters(), lopt=_lopt())
    _train(model, opt, 3)
    m1, m2 = copy.deepcopy(model), copy.deepcopy(model)
    o1 = LearnedOptimizer(m1.parameters(), lopt=_lopt())
    o1.load_state_dict(opt.state_dict())
    o2 = LearnedOptimizer(m2.parameters(), lopt=_lopt())
    _train(m1, o1, 1, start=3)
    _train(m2, o2, 1, start=3)
    assert not all(torch.allclose(a, b) for a, b in zip(m1.parameters(), m2.parameters()))


@pytest.mark.parametrize("key", ["lr", "scale"])  # "scale": the former name of the multiplier
def test_param_group_lr_multiplies_the_update(key):
    lopt = _lopt()
    m_full, m_half = _mlp(), _mlp()
    before = [p.detach().clone() for p in m_full.parameters()]
    o_full = LearnedOptimizer(m_full.parameters(), lopt=lopt)
    o_half = LearnedOptimizer([{"params": list(m_half[0].parameters()), key: 0.5},
                               {"params": list(m_half[2].parameters())}], lopt=lopt)
    assert o_half.param_groups[0]["lr"] == 0.5 and "scale" not in o_half.param_groups[0]
    for m, o in ((m_full, o_full), (m_half, o_half)):
        _loss(m(_batch(m, 0))).backward()
        o.step()
    full = [a.detach() - b for a, b in zip(m_full.parameters(), before)]
    half = [a.detach() - b for a, b in zip(m_half.parameters(), before)]
    torch.testing.assert_close(half[0], 0.5 * full[0])
    torch.testing.assert_close(half[1], 0.5 * full[1])
    torch.testing.assert_close(half[2], full[2])
    assert full[0].abs().sum() > 0


def test_add_param_group_and_bad_kind():
    model = _mlp()
    opt = LearnedOptimizer(model[0].parameters(), lopt=_lopt())
    _train(model, opt, 1)
    opt.add_param_group({"params": list(model[2].parameters()), "lr": 2.0})
    before = model[2].weight.detach().clone()
    _train(model, opt, 1, start=1)
    assert not torch.equal(before, model[2].weight)
    with pytest.raises(ValueError, match="kind"):
        LearnedOptimizer([{"params": [nn.Parameter(torch.zeros(2))], "kind": "rnn"}], lopt=_lopt())


def test_params_without_grad_keep_no_state():
    model = _mlp()
    model[0].weight.requires_grad_(False)
    opt = LearnedOptimizer(model.parameters(), lopt=_lopt())
    _train(model, opt, 2)
    assert model[0].weight not in opt.state and model[2].weight in opt.state


def test_float64_params():
    torch.manual_seed(0)
    model = nn.Linear(3, 1).double()
    opt = LearnedOptimizer(model.parameters(), lopt=_lopt())
    model(torch.randn(4, 3, dtype=torch.float64)).pow(2).mean().backward()
    opt.step()
    assert model.weight.dtype == torch.float64 and torch.isfinite(model.weight).all()


def test_exactly_one_source():
    with pytest.raises(ValueError, match="exactly one"):
        LearnedOptimizer([nn.Parameter(torch.zeros(1))])


def test_checkpoint_and_pretrained_constructors(tmp_path, monkeypatch):
    lopt = _lopt()
    save_learned_optimizer(lopt, tmp_path / "tiny.pt", {"task": {"class": "Tiny"}, "horizon": 5})
    m1, m2 = _mlp(), _mlp()
    o1 = LearnedOptimizer(m1.parameters(), checkpoint=tmp_path / "tiny.pt")
    (tmp_path / "tiny.json").write_text('{"name": "tiny", "trained_on": "Tiny()", "horizon": 5, "summary": "test"}')
    monkeypatch.setattr(l2l_torch.pretrained, "PACKAGE_DIR", tmp_path)
    assert list(l2l_torch.list_pretrained()) == ["tiny"]
    o2 = LearnedOptimizer(m2.parameters(), pretrained="tiny")
    assert o1.meta["horizon"] == 5
    _train(m1, o1, 2)
    _train(m2, o2, 2)
    for a, b in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="unknown pretrained optimizer 'nope'; available: tiny"):
        LearnedOptimizer(m1.parameters(), pretrained="nope")


def test_state_bytes_per_param():
    opt = LearnedOptimizer([nn.Parameter(torch.zeros(1))], lopt=LSTMOptimizer(hidden_size=20, num_layers=2))
    assert opt.state_bytes_per_param() == 2 * 2 * 20 * 4  # (h, c) per layer, float32
    model = nn.Linear(10, 10)
    opt = LearnedOptimizer(model.parameters(), lopt=LSTMOptimizer(hidden_size=20, num_layers=2))
    model(torch.randn(2, 10)).sum().backward()
    opt.step()
    held = {s["coords"].untyped_storage().data_ptr(): s["coords"].untyped_storage().nbytes()
            for s in opt.state.values()}
    assert sum(held.values()) == opt.state_bytes_per_param() * sum(p.numel() for p in model.parameters())


def test_from_lightning_configure_optimizers(tmp_path):
    import lightning as L

    class Regression(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(3, 1)

        def training_step(self, batch, _):
            x, y = batch
            loss = (self.net(x) - y).pow(2).mean()
            self.log("train/loss", loss)
            return loss

        def configure_optimizers(self):
            opt = LearnedOptimizer(self.parameters(), lopt=_lopt())
            self.adaptation = l2l_torch.HypergradientLR(opt, beta=1.0, max_factor=10.0)
            return opt

    torch.manual_seed(0)
    x = torch.randn(16, 3)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)
    model = Regression()
    before = model.net.weight.detach().clone()
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, data)
    assert trainer.global_step == 2
    assert not torch.equal(before, model.net.weight)
    opt = trainer.optimizers[0]
    assert isinstance(opt, LearnedOptimizer) and model.net.weight in opt.state
    assert model.adaptation.factors() != [1.0]  # the adaptation ran in Lightning's optimizer steps


def _apply_one_by_one(items, names, params, new_params) -> None:
    """The deployment step's former application, parameter by parameter (the reference of the foreach one)."""
    for n, (p, g) in zip(names, items):
        lr, wd = g["lr"], g["weight_decay"]
        if lr == 1.0 and not wd:
            p.copy_(new_params[n])
            continue
        update = new_params[n] - params[n]
        if wd:
            p.mul_(1.0 - lr * wd)
        p.add_(update, alpha=lr)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_foreach_application_equals_one_by_one(dtype, monkeypatch, on_device):
    """All parameters of one (lr, weight_decay) are written with torch._foreach_* ops: bit for bit the values of
    the parameter-by-parameter loop, with three groups (the meta-trained step, a scaled one, one with weight
    decay) over several steps."""
    import l2l_torch.optim as optim_module

    foreach = optim_module._apply

    def run(apply) -> list[torch.Tensor]:
        monkeypatch.setattr(optim_module, "_apply", apply)
        model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3), nn.Tanh(), nn.Linear(3, 2)).to(dtype)
        torch.manual_seed(0)
        for p in model.parameters():
            p.data.normal_()
        groups = [{"params": list(model[0].parameters())}, {"params": list(model[2].parameters()), "lr": 0.5},
                  {"params": list(model[4].parameters()), "lr": 2.0, "weight_decay": 0.1}]
        opt = LearnedOptimizer(groups, lopt=_lopt())
        start = [p.detach().clone() for p in model.parameters()]
        for t in range(3):
            opt.zero_grad()
            _loss(model(_batch(_mlp(), t).to(dtype))).backward()
            opt.step()
        return start, [p.detach().clone() for p in model.parameters()]

    calls = []
    start, ours = run(lambda *a: calls.append(1) or foreach(*a))
    _, ref = run(_apply_one_by_one)
    assert len(calls) == 3
    for a, b, s in zip(ours, ref, start, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert not torch.equal(a, s)  # every group moved
