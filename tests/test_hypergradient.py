"""HypergradientLR: the direction of the adaptation, its arithmetic, its bounds and its state."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from l2l_torch import LearnedOptimizer, LSTMOptimizer
from l2l_torch.hypergradient import HypergradientLR


def _quadratic_run(lr: float, steps: int, beta: float | None, max_factor: float = 1.0):
    """SGD on f(x) = |x|^2 / 2 from x = 1: the update at lr is -lr x, so lr > 2 diverges and lr < 1 undershoots."""
    x = nn.Parameter(torch.ones(5))
    opt = torch.optim.SGD([x], lr=lr)
    hd = None if beta is None else HypergradientLR(opt, beta=beta, max_factor=max_factor)
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * x.pow(2).sum()).backward()
        opt.step()
    return float(0.5 * x.detach().pow(2).sum()), hd


def test_an_overshooting_step_shrinks_until_it_converges():
    plain, _ = _quadratic_run(2.5, 30, None)
    adapted, hd = _quadratic_run(2.5, 30, beta=0.5)
    assert plain > 2.5  # |1 - 2.5| = 1.5 per step: it diverges
    assert adapted < 1e-3 and hd.factors()[0] < 0.8


def test_a_short_step_grows_only_up_to_max_factor():
    _, capped = _quadratic_run(0.05, 20, beta=0.5)
    _, free = _quadratic_run(0.05, 20, beta=0.5, max_factor=10.0)
    assert capped.factors() == [1.0]  # cos(g, u) = -1 every step: it would grow, but the default cap is 1
    assert 1.5 < free.factors()[0] <= 10.0


def test_one_step_of_the_rule_by_hand():
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(4, 3))
    opt = torch.optim.SGD([w], lr=0.3)
    hd = HypergradientLR(opt, beta=0.7, max_factor=10.0)
    grads = [torch.randn(4, 3) for _ in range(2)]
    before = w.detach().clone()
    w.grad = grads[0]
    opt.step()
    u = w.detach() - before
    assert hd.factors() == [1.0]  # no update yet to compare the first gradient with
    w.grad = grads[1]
    opt.step()
    cos = float((grads[1] * u).sum() / (grads[1].norm() * u.norm()))
    assert hd.factors()[0] == pytest.approx(math.exp(-0.7 * cos), rel=1e-5)
    assert float(opt.param_groups[0]["lr"]) == pytest.approx(0.3 * math.exp(-0.7 * cos), rel=1e-5)


def test_beta_zero_is_the_optimizer_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    twin = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    twin.load_state_dict(model.state_dict())
    lopt = LSTMOptimizer(hidden_size=4)
    a = LearnedOptimizer(model.parameters(), lopt=lopt, lr=0.3)
    b = LearnedOptimizer(twin.parameters(), lopt=lopt, lr=0.3)
    HypergradientLR(b, beta=0.0)
    for t in range(5):
        x = torch.randn(16, 6, generator=torch.Generator().manual_seed(t))
        for m, o in ((model, a), (twin, b)):
            o.zero_grad()
            m(x).pow(2).mean().backward()
            o.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)  # a tensor lr of 0.3: the same step
    assert isinstance(b.param_groups[0]["lr"], torch.Tensor)


def test_state_dict_round_trip_and_bad_arguments():
    _, hd = _quadratic_run(2.5, 10, beta=0.5)
    x = nn.Parameter(torch.ones(5))
    opt = torch.optim.SGD([x], lr=2.5)
    fresh = HypergradientLR(opt)
    fresh.load_state_dict(hd.state_dict())
    assert fresh.factors() == pytest.approx(hd.factors()) and fresh.beta == 0.5
    assert float(opt.param_groups[0]["lr"]) == pytest.approx(2.5 * hd.factors()[0])
    with pytest.raises(ValueError, match="already a tensor"):
        HypergradientLR(opt)
    for bad in ({"beta": -1.0}, {"max_factor": 0.5}, {"min_factor": 0.0}, {"beta": math.nan}):
        with pytest.raises(ValueError, match="beta >= 0"):
            HypergradientLR(torch.optim.SGD([nn.Parameter(torch.ones(2))], lr=0.1), **bad)


def test_a_learned_optimizer_with_it_resumes_through_torch_save(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    opt = LearnedOptimizer(model.parameters(), lopt=LSTMOptimizer(hidden_size=4))
    hd = HypergradientLR(opt, beta=3.0, max_factor=10.0)
    for _ in range(4):
        opt.zero_grad()
        model(torch.randn(8, 4)).pow(2).mean().backward()
        opt.step()
    torch.save({"opt": opt.state_dict(), "hd": hd.state_dict()}, tmp_path / "s.pt")
    saved = torch.load(tmp_path / "s.pt", weights_only=True)
    again = LearnedOptimizer(model.parameters(), lopt=opt.lopt)
    hd2 = HypergradientLR(again, beta=0.0)
    again.load_state_dict(saved["opt"])
    hd2.load_state_dict(saved["hd"])
    assert hd.factors()[0] != 1.0 and hd2.factors() == pytest.approx(hd.factors()) and hd2.beta == 3.0
    assert float(again.param_groups[0]["lr"]) == pytest.approx(hd.factors()[0])


@pytest.mark.parametrize("as_keyword", [False, True])
def test_a_step_with_a_closure_adapts_as_one_without(as_keyword):
    """With a closure (Lightning passes one) the gradients exist only once it ran: the rule runs right after it."""
    plain, hd = _quadratic_run(2.5, 12, beta=0.5)
    x = nn.Parameter(torch.ones(5))
    opt = torch.optim.SGD([x], lr=2.5)
    with_closure = HypergradientLR(opt, beta=0.5)

    def closure():
        opt.zero_grad()
        loss = 0.5 * x.pow(2).sum()
        loss.backward()
        return loss

    for _ in range(12):
        opt.step(closure=closure) if as_keyword else opt.step(closure)
    assert with_closure.factors() == pytest.approx(hd.factors(), rel=1e-6) and hd.factors()[0] < 1
    assert float(0.5 * x.detach().pow(2).sum()) == pytest.approx(plain, rel=1e-5)
