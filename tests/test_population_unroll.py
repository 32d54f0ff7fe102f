"""A population of task instances unrolled at once (:func:`~l2l_torch.population_unroll.population_unroll`: stacked
params, vectorised optimizee forward and backward, one learned-optimizer step for all) against the same truncations
one by one (:func:`~l2l_torch.unroll.truncated_unroll`): the same meta-gradient, losses, params, buffers and
optimizer states over two consecutive truncations, for MLPs, a small CNN with BatchNorm, quadratics, and the LSTM
(flat and vmapped steps) and small_fc optimizers; and how TruncatedBPTT chooses the path."""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from dataclasses import replace

import pytest
import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten, tree_map

import l2l_torch.estimators.truncated_bptt as bptt_module
from l2l_torch.estimators import TruncatedBPTT
from l2l_torch.learned_optimizers import LSTMOptimizer, SmallFCOptimizer
from l2l_torch.learned_optimizers.base import LearnedOptimizerBase
from l2l_torch.population_unroll import population_obstacle, population_unroll, step_mode
from l2l_torch.tasks import Task
from l2l_torch.tasks.image_classification import ImageClassificationTask
from l2l_torch.unroll import UnrollState, init_unroll, truncated_unroll
from tests.helpers import needs_data, quadratic64, small_fashion_mnist_mlps

TOL64 = {"rtol": 1e-9, "atol": 1e-12}


def _lstm() -> LearnedOptimizerBase:
    torch.manual_seed(0)
    lopt = LSTMOptimizer(hidden_size=4, output_scale=0.3)
    with torch.no_grad():  # a head that moves the optimizees visibly
        lopt.nets["all"].head.weight.mul_(5.0)
    return lopt


LOPTS: dict[str, tuple[Callable[[], LearnedOptimizerBase], str]] = {
    "lstm_flat": (_lstm, "flat"),
    "lstm_vmap": (_lstm, "vmap"),
    "lstm_per_kind": (lambda: LSTMOptimizer(hidden_size=3, num_layers=1, per_kind=True, output_scale=0.3), "auto"),
    "lstm_batchnorm": (lambda: LSTMOptimizer(hidden_size=4, normalization="batch", output_scale=0.3), "auto"),
    "small_fc": (lambda: SmallFCOptimizer(hidden=(8,), adam_skip=True, warmup=2.0, step_mult=0.05), "auto"),
    "small_fc_per_kind": (lambda: SmallFCOptimizer(hidden=(8,), per_kind=True, step_mult=0.05), "auto"),
}


def _convnets() -> list[Task]:
    """Three small CNNs with BatchNorm (running statistics as buffers) on 8x8 random images, float64 (BatchNorm after
    the ReLU: a conv bias right before BatchNorm has a gradient of pure rounding noise)."""
    g = torch.Generator().manual_seed(0)
    data = {split: (torch.randn(32, 1, 8, 8, generator=g, dtype=torch.float64), torch.randint(10, (32,), generator=g))
            for split in ("train", "val", "test")}
    return [ImageClassificationTask(seed, data, nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(3), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(3 * 4 * 4, 10)).double(), batch_size=4) for seed in range(3)]


def _mlps() -> list[Task]:
    """Three MLPs 64-5-10 (tanh) on 8x8 random images, float64."""
    g = torch.Generator().manual_seed(1)
    data = {split: (torch.randn(40, 1, 8, 8, generator=g, dtype=torch.float64), torch.randint(10, (40,), generator=g))
            for split in ("train", "val", "test")}
    return [ImageClassificationTask(seed, data, nn.Sequential(nn.Flatten(), nn.Linear(64, 5), nn.Tanh(),
                                                              nn.Linear(5, 10)).double(), batch_size=6)
            for seed in range(3)]


def _judge(**tol) -> Callable[[Tensor, Tensor, Tensor | None], None]:
    """``judge(population, one_by_one, exact)``: without ``exact``, ``torch.testing.assert_close(population,
    one_by_one, **tol)``. With ``exact`` (the same quantity computed one by one in float64, for float32 paths): the
    population path must be as accurate as the one-by-one path, ``||population - exact|| <= 3 ||one_by_one - exact||
    + 1e-5 ||exact||`` over the whole tensor. Float32 rounding differs between the two paths' kernels and grows over an
    unroll and its backward, by how much depends on the CPU's kernels, so a fixed tolerance between the two float32
    paths fails on one CPU (1e-4 of a tensor's norm did, for a small_fc meta-gradient) or hides errors on another;
    measured against float64, an error of 0.1 % in the population path fails this test."""

    def judge(a: Tensor, b: Tensor, exact: Tensor | None = None) -> None:
        if exact is None or not a.is_floating_point():  # (integer state, such as a step count, is exact)
            return torch.testing.assert_close(a, b, **tol)
        assert a.shape == b.shape == exact.shape and a.dtype == b.dtype
        a, b, exact = a.detach(), b.detach(), exact.detach()
        err_a, err_b = (float((x.double() - exact).norm()) for x in (a, b))
        bound = 3 * err_b + 1e-5 * float(exact.norm()) + 1e-12
        assert err_a <= bound, f"||pop - exact|| = {err_a:.3g} > 3 ||one by one - exact|| + 1e-5 ||exact|| = {bound:.3g}"

    return judge


def _assert_same_tree(a, b, exact, judge) -> None:
    la, sa = tree_flatten(a)
    lb, sb = tree_flatten(b)
    le = tree_flatten(exact)[0] if exact is not None else [None] * len(la)
    assert sa == sb
    for x, y, e in zip(la, lb, le, strict=True):
        if isinstance(x, Tensor):
            assert x.shape == y.shape and x.dtype == y.dtype
            judge(x, y, e)
        else:
            assert x == y


def _float64_twin(state: UnrollState) -> UnrollState:
    """The same optimizee state in float64, its image-classification task (data and network) too: the reference that
    the float32 paths are measured against."""
    t = state.task
    task = ImageClassificationTask(t.seed, {k: (x.double(), y) for k, (x, y) in t.data.items()},
                                   copy.deepcopy(t.module).double(), batch_size=t.batch_size)
    gen = torch.Generator(device=t.device)
    gen.set_state(state.generator.get_state())

    def to64(v):
        return v.double() if isinstance(v, Tensor) and v.is_floating_point() else v

    return replace(state, task=task, params=tree_map(to64, state.params), buffers=tree_map(to64, state.buffers),
                   lopt_state=tree_map(to64, state.lopt_state), generator=gen)


def _compare(lopt: LearnedOptimizerBase, tasks: Callable[[], list[Task]], mode: str = "auto", steps: int = 3,
             truncations: int = 2, float64_reference: bool = False, **tol) -> None:
    """``truncations`` truncations both ways from equal fresh instances; everything compared after each (with
    ``float64_reference``, each path against the one-by-one path in float64, :func:`_judge`)."""
    theta = list(lopt.parameters())
    weights = torch.linspace(0.5, 1.5, steps, dtype=theta[0].dtype)
    loop = [init_unroll(lopt, t, 10 + i) for i, t in enumerate(tasks())]
    pop = [init_unroll(lopt, t, 10 + i) for i, t in enumerate(tasks())]
    assert population_obstacle(lopt, pop) is None
    lopt64 = copy.deepcopy(lopt).double() if float64_reference else None
    exact = [_float64_twin(s) for s in loop] if float64_reference else None
    judge = _judge(**tol)
    for _ in range(truncations):
        ref = [truncated_unroll(lopt, s, steps, weights) for s in loop]
        g_ref = torch.autograd.grad(torch.stack([r.meta_loss for r in ref]).mean(), theta, allow_unused=True,
                                    materialize_grads=True)
        out = population_unroll(lopt, pop, steps, weights, mode=mode)
        g_out = torch.autograd.grad(torch.stack([r.meta_loss for r in out]).mean(), theta, allow_unused=True,
                                    materialize_grads=True)
        ex, g_ex = [None] * len(ref), [None] * len(theta)
        if lopt64 is not None:
            ex = [truncated_unroll(lopt64, s, steps, weights.double()) for s in exact]
            g_ex = torch.autograd.grad(torch.stack([r.meta_loss for r in ex]).mean(), list(lopt64.parameters()),
                                       allow_unused=True, materialize_grads=True)
        assert any(float(g.abs().max()) > 0 for g in g_ref)
        for a, b, e in zip(g_out, g_ref, g_ex, strict=True):
            judge(a, b, e)
        for r, o, e in zip(ref, out, ex, strict=True):
            for name in ("meta_loss", "losses", "update_size"):
                judge(getattr(o, name), getattr(r, name), None if e is None else getattr(e, name))
            assert float(o.update_size) > 0
            assert o.state.step == r.state.step
            for part in ("params", "buffers", "lopt_state"):
                _assert_same_tree(getattr(o.state, part), getattr(r.state, part),
                                  None if e is None else getattr(e.state, part), judge)
            assert torch.equal(o.state.generator.get_state(), r.state.generator.get_state())
            assert not any(v.requires_grad for v in o.state.params.values())
            assert all(v._base is None for v in o.state.params.values())  # own tensors, not views of the stacks
        loop, pop = [r.state for r in ref], [o.state for o in out]
        exact = None if lopt64 is None else [e.state for e in ex]


def _quadratics() -> list[Task]:
    return [quadratic64(s) for s in range(3)]


@pytest.mark.parametrize("arch", sorted(LOPTS))
def test_population_equals_one_by_one_on_quadratics(arch):
    make, mode = LOPTS[arch]
    _compare(make().double(), _quadratics, mode, **TOL64)


@pytest.mark.parametrize("arch", ["lstm_flat", "lstm_vmap", "small_fc"])
def test_population_equals_one_by_one_on_mlps(arch):
    make, mode = LOPTS[arch]
    _compare(make().double(), _mlps, mode, **TOL64)


@pytest.mark.parametrize("arch", ["lstm_per_kind", "lstm_vmap", "small_fc_per_kind"])
def test_population_equals_one_by_one_on_a_cnn_with_batchnorm(arch):
    make, mode = LOPTS[arch]
    _compare(make().double(), _convnets, mode, **TOL64)


def test_population_keeps_second_order_terms():
    lopt = _lstm().double()
    loop = [init_unroll(lopt, t, i) for i, t in enumerate(_mlps()[:2])]
    pop = [init_unroll(lopt, t, i) for i, t in enumerate(_mlps()[:2])]
    theta = list(lopt.parameters())
    ref = torch.autograd.grad(sum(truncated_unroll(lopt, s, 2, second_order=True).meta_loss for s in loop), theta)
    out = torch.autograd.grad(sum(r.meta_loss for r in population_unroll(lopt, pop, 2, second_order=True)), theta)
    first = torch.autograd.grad(sum(truncated_unroll(lopt, s, 2).meta_loss for s in loop), theta)
    for a, b in zip(out, ref, strict=True):
        torch.testing.assert_close(a, b, **TOL64)
    assert any(not torch.allclose(b, c, rtol=1e-6, atol=1e-9) for b, c in zip(ref, first))  # it matters


@needs_data("FashionMNIST")
@pytest.mark.parametrize("arch", ["lstm_flat", "small_fc"])
def test_population_equals_one_by_one_on_fashion_mnist_in_float32(arch, tmp_path, monkeypatch):
    """The shipped kind of task (an MLP on Fashion-MNIST) in float32: the population path as accurate as the one-by-one
    path, both measured against the one-by-one path in float64 (:func:`_judge`). The float64 tests above hold the
    paths to 1e-9 (relative) of each other."""
    fam = small_fashion_mnist_mlps(tmp_path, monkeypatch)
    make, mode = LOPTS[arch]
    _compare(make(), lambda: [fam.sample(s) for s in range(3)], mode, float64_reference=True)


@needs_data("FashionMNIST")
def test_the_float32_parity_catches_an_error_of_a_tenth_of_a_percent(tmp_path, monkeypatch):
    """The measure of the test above can fail: a population path whose meta-loss weights are 0.1 % too large."""
    fam = small_fashion_mnist_mlps(tmp_path, monkeypatch)
    right = population_unroll
    monkeypatch.setattr(sys.modules[__name__], "population_unroll",
                        lambda lopt, pop, steps, weights, **kw: right(lopt, pop, steps, 1.001 * weights, **kw))
    make, mode = LOPTS["small_fc"]
    with pytest.raises(AssertionError, match="one by one - exact"):
        _compare(make(), lambda: [fam.sample(s) for s in range(3)], mode, float64_reference=True)


def test_step_mode_and_obstacles():
    assert step_mode(_lstm()) == "flat" and step_mode(LOPTS["small_fc"][0]()) == "vmap"
    with pytest.raises(ValueError, match="tasks_batchable"):
        step_mode(LOPTS["small_fc"][0](), "flat")
    lopt = _lstm().double()
    mixed = [init_unroll(lopt, quadratic64(0), 0), init_unroll(lopt, _mlps()[0], 1)]
    assert "differ in their loss" in population_obstacle(lopt, mixed)
    with pytest.raises(ValueError, match="cannot stack"):
        population_unroll(lopt, mixed, 2)


def _refuse(*args, **kwargs):
    raise AssertionError("population_unroll was called")


def test_truncated_bptt_population_switch(monkeypatch):
    """``population=True`` stacks (same estimate as ``False``); ``"auto"`` does not on a CPU; instances that cannot
    be stacked fall back to one by one."""
    lopt = _lstm().double()

    def estimate(est: TruncatedBPTT, tasks: list[Task]):
        states = [init_unroll(lopt, t, i) for i, t in enumerate(tasks)]
        e = est.estimate(lopt, states, 3, None)
        return e, torch.autograd.grad(e.meta_loss, list(lopt.parameters()))

    off, g_off = estimate(TruncatedBPTT(population=False), _mlps())
    seen = []
    monkeypatch.setattr(bptt_module, "population_unroll",
                        lambda *a, **k: seen.append(1) or population_unroll(*a, **k))
    on, g_on = estimate(TruncatedBPTT(population=True), _mlps())
    assert seen
    torch.testing.assert_close(on.meta_loss, off.meta_loss, **TOL64)
    for a, b in zip(g_on, g_off, strict=True):
        torch.testing.assert_close(a, b, **TOL64)
    monkeypatch.setattr(bptt_module, "population_unroll", _refuse)
    assert not TruncatedBPTT().use_population(lopt, [init_unroll(lopt, t, i) for i, t in enumerate(_mlps())])
    estimate(TruncatedBPTT(), _mlps())  # auto on a CPU: one by one
    estimate(TruncatedBPTT(population=True), [quadratic64(0), _mlps()[0]])  # cannot stack: one by one
    with pytest.raises(ValueError, match="population"):
        TruncatedBPTT(population="yes")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("arch", ["lstm_flat", "small_fc"])
def test_population_equals_one_by_one_on_cuda(arch):
    """On CUDA (torch's LSTM cell there, :func:`~l2l_torch.learned_optimizers.lstm.cell_backend`), float64 MLPs."""
    make, mode = LOPTS[arch]
    _compare(make().double().cuda(), lambda: [t.to("cuda") for t in _mlps()], mode, rtol=1e-7, atol=1e-9)
    lopt = make().double().cuda()
    states = [init_unroll(lopt, t.to("cuda"), i) for i, t in enumerate(_mlps())]
    assert TruncatedBPTT().use_population(lopt, states)  # the default there
