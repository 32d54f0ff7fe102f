"""PES with all particles unrolled at once (``torch.func.vmap``, :mod:`l2l_torch.vmap_unroll`) against the same
estimate with the particles unrolled one by one: the same perturbations, meta-losses, carried states and estimate,
over two consecutive truncations, for every learned-optimizer architecture; and the fallback to one by one where
the particles cannot be batched."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils import parameters_to_vector
from torch.utils._pytree import tree_flatten

import l2l_torch.estimators.pes as pes_module
import l2l_torch.vmap_unroll as vmap_unroll
from l2l_torch.estimators import PES, PESResult, antithetic_pair, pes_estimate
from l2l_torch.learned_optimizers import HyperAdamOptimizer, LSTMOptimizer, SmallFCOptimizer
from l2l_torch.learned_optimizers.base import LearnedOptimizerBase
from l2l_torch.learned_optimizers.rnnprop import RNNpropOptimizer
from l2l_torch.tasks import Task
from l2l_torch.tasks.image_classification import ImageClassificationTask
from l2l_torch.tasks.mixture import ScaledClassificationTask
from l2l_torch.tasks.models import build_model
from l2l_torch.tasks.quadratic import QuadraticFamily, QuadraticTask
from l2l_torch.unroll import UnrollState, init_unroll
from l2l_torch.vmap_unroll import obstacle
from tests.helpers import needs_data

#: float64 throughout: the batched and the one-by-one estimates agree to rounding
TOL = {"rtol": 1e-9, "atol": 1e-12}

LOPTS: dict[str, Callable[[], LearnedOptimizerBase]] = {
    "lstm": lambda: LSTMOptimizer(hidden_size=4),
    "lstm_batchnorm": lambda: LSTMOptimizer(hidden_size=4, normalization="batch", preprocess="none"),
    "lstm_per_kind": lambda: LSTMOptimizer(hidden_size=3, num_layers=1, per_kind=True),
    "rnnprop": lambda: RNNpropOptimizer(hidden_size=4),
    "small_fc": lambda: SmallFCOptimizer(hidden=(8,), adam_skip=True, warmup=2.0),
    "small_fc_per_kind": lambda: SmallFCOptimizer(hidden=(8,), per_kind=True),
    "hyper_adam": lambda: HyperAdamOptimizer(hidden=(8,), features=["adam0.5", "adam0.9", "log_rms_g", "log_numel",
                                                                     "t10"], log_rms_min=-10.0),
}


def _quadratic(seed: int, dim: int = 4) -> Task:
    """Two ``dim``-d quadratics in float64."""
    task = QuadraticFamily(dim=dim, num=2).sample(seed)
    task.w, task.y = task.w.double(), task.y.double()
    task.module.double()
    return task


def _quadratics() -> list[Task]:
    return [_quadratic(seed) for seed in range(3)]


def _images() -> dict[str, tuple[Tensor, Tensor]]:
    g = torch.Generator().manual_seed(0)
    return {split: (torch.randn(32, 1, 8, 8, generator=g, dtype=torch.float64), torch.randint(10, (32,), generator=g))
            for split in ("train", "val", "test")}


def _convnets() -> list[Task]:
    """Two small CNNs with BatchNorm (running statistics as buffers) on 8x8 random images, float64. BatchNorm comes
    after the ReLU: a conv bias right before a BatchNorm has a gradient of pure rounding noise (the normalisation
    removes it), which the per-tensor normalised features turn into unit-size inputs, so its updates depend on
    rounding (see :func:`test_batched_pes_agrees_on_the_study_cnn`)."""
    data = _images()
    return [ImageClassificationTask(seed, data, nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(4), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(), nn.BatchNorm2d(6), nn.Flatten(), nn.Linear(6 * 4 * 4, 10)).double(), batch_size=4)
        for seed in range(2)]


def _pairs(lopt: LearnedOptimizerBase, tasks: list[Task]) -> list[tuple[UnrollState, UnrollState]]:
    return [antithetic_pair(init_unroll(lopt, task, 10 + i)) for i, task in enumerate(tasks)]


def _two_truncations(lopt: LearnedOptimizerBase, tasks: list[Task], batched: bool,
                     steps: int = 3) -> list[PESResult]:
    """Two consecutive PES estimates from fresh particles (the second continues the first's states and xi)."""
    torch.manual_seed(0)
    pairs = _pairs(lopt, tasks)
    xi = [torch.zeros_like(parameters_to_vector(lopt.parameters()).detach())] * len(pairs)
    weights = torch.linspace(0.5, 1.5, steps, dtype=torch.float64)
    out = []
    for _ in range(2):
        est = pes_estimate(lopt, pairs, xi, steps, sigma=0.05, weights=weights, batched=batched)
        out.append(est)
        pairs = [(a.state, b.state) for a, b in zip(est.results[0::2], est.results[1::2])]
        xi = est.xi
    return out


def _assert_same_tree(a, b, **tol) -> None:
    la, sa = tree_flatten(a)
    lb, sb = tree_flatten(b)
    assert sa == sb
    for x, y in zip(la, lb):
        if isinstance(x, Tensor):
            assert x.shape == y.shape and x.dtype == y.dtype
            torch.testing.assert_close(x, y, **tol)
        else:
            assert x == y


def _assert_same_estimates(seq: list[PESResult], bat: list[PESResult], **tol) -> None:
    for s, b in zip(seq, bat, strict=True):
        torch.testing.assert_close(b.grad, s.grad, **tol)
        torch.testing.assert_close(b.variance, s.variance, **tol)
        _assert_same_tree(b.xi, s.xi, **tol)
        assert len(b.results) == len(s.results)
        for rs, rb in zip(s.results, b.results):
            for name in ("meta_loss", "losses", "update_size"):
                torch.testing.assert_close(getattr(rb, name), getattr(rs, name), **tol)
            assert not rb.meta_loss.requires_grad
            assert rb.state.task is rs.state.task and rb.state.step == rs.state.step
            _assert_same_tree(rb.state.params, rs.state.params, **tol)
            _assert_same_tree(rb.state.buffers, rs.state.buffers, **tol)
            _assert_same_tree(rb.state.lopt_state, rs.state.lopt_state, **tol)
            assert torch.equal(rb.state.generator.get_state(), rs.state.generator.get_state())
            assert rb.state.generator is not rs.state.generator


def _refuse(*args, **kwargs):
    raise AssertionError("the particles were unrolled one by one")


def _forget_tasks(estimates: list[PESResult]) -> None:
    """Two runs use distinct but equal task instances: compare their results by position instead."""
    for est in estimates:
        for r in est.results:
            r.state.task = None


def _compare(lopt: LearnedOptimizerBase, tasks: Callable[[], list[Task]], monkeypatch, **tol) -> list[PESResult]:
    """Two truncations batched (the one-by-one path made to fail) against one by one, on equal fresh tasks."""
    seq = _two_truncations(lopt, tasks(), batched=False)
    fresh = tasks()
    assert obstacle(lopt, [s for pair in _pairs(lopt, fresh) for s in pair]) is None
    with monkeypatch.context() as m:
        m.setattr(pes_module, "truncated_unroll", _refuse)
        bat = _two_truncations(lopt, fresh, batched=True)
    _forget_tasks(seq + bat)
    _assert_same_estimates(seq, bat, **tol)
    assert all(float(r.update_size) > 0 for r in bat[-1].results)  # the optimizers did move the optimizees
    assert not torch.equal(bat[0].results[0].meta_loss, bat[0].results[1].meta_loss)  # + and - differ
    return bat


@pytest.mark.parametrize("arch", sorted(LOPTS))
def test_batched_pes_equals_one_by_one_on_quadratics(arch, monkeypatch):
    _compare(LOPTS[arch]().double(), _quadratics, monkeypatch, **TOL)


@pytest.mark.parametrize("vectorized", [True, False], ids=["vmap_loss", "autograd_loss"])
@pytest.mark.parametrize("arch", ["lstm_per_kind", "small_fc_per_kind", "hyper_adam"])
def test_batched_pes_equals_one_by_one_on_a_cnn_with_batchnorm(arch, vectorized, monkeypatch):
    """Conv params (per-kind optimizers see two groups), BatchNorm running statistics and batches drawn per
    particle from their own generators; the optimizees' gradients by vmap, and by autograd particle by particle
    (the choice on CPUs, :func:`~l2l_torch.vmap_unroll.vectorize_loss`)."""
    assert not vmap_unroll.vectorize_loss(_convnets()[0])
    monkeypatch.setattr(vmap_unroll, "vectorize_loss", lambda task: vectorized)
    bat = _compare(LOPTS[arch]().double(), _convnets, monkeypatch, **TOL)
    state = bat[-1].results[0].state
    assert int(state.buffers["2.num_batches_tracked"]) == 6  # 3 steps per truncation (not the last evaluations)
    assert float(state.buffers["2.running_mean"].abs().sum()) > 0


def test_batched_pes_agrees_on_the_study_cnn(monkeypatch):
    """The study's conv-only CNN (conv biases right before BatchNorm, whose gradients are rounding noise: their
    updates, and so those biases and the running means, differ by rounding noise amplified by the per-tensor
    normalisation of small_fc's features): the meta-losses and the estimate agree all the same, since the loss
    does not depend on those biases."""
    data = _images()

    def tasks() -> list[Task]:
        return [ImageClassificationTask(s, data, build_model("conv", (1, 8, 8)).double(), batch_size=4)
                for s in range(2)]

    lopt = LOPTS["small_fc_per_kind"]().double()
    seq = _two_truncations(lopt, tasks(), batched=False)
    with monkeypatch.context() as m:
        m.setattr(pes_module, "truncated_unroll", _refuse)
        bat = _two_truncations(lopt, tasks(), batched=True)
    for s, b in zip(seq, bat):
        torch.testing.assert_close(b.grad, s.grad, rtol=1e-7, atol=1e-10)
        for rs, rb in zip(s.results, b.results):
            torch.testing.assert_close(rb.losses, rs.losses, rtol=1e-9, atol=0)
            torch.testing.assert_close(rb.state.params["8.weight"], rs.state.params["8.weight"], **TOL)


@needs_data("FashionMNIST")
def test_batched_pes_equals_one_by_one_on_fashion_mnist_in_float32(monkeypatch):
    """The shipped kind of task (an MLP on Fashion-MNIST) in float32: equal up to float32 rounding."""
    from l2l_torch.tasks.image_classification import ImageClassificationFamily

    family = ImageClassificationFamily(dataset="fashion_mnist", subset=300, batch_size=16)
    lopt = HyperAdamOptimizer()
    _compare(lopt, lambda: [family.sample(s) for s in range(2)], monkeypatch, rtol=1e-4, atol=1e-5)


class _PenalisedQuadratic(QuadraticTask):
    def meta_penalty(self, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor],
                     generator: torch.Generator) -> Tensor | None:
        return 0.1 * params["x"].pow(2).sum()


def _penalised() -> list[Task]:
    task = _PenalisedQuadratic(0, dim=4, num=2)
    task.w, task.y = task.w.double(), task.y.double()
    task.module.double()
    return [task, _quadratic(1)]


def _scaled() -> list[Task]:
    g = torch.Generator().manual_seed(0)
    data = {"train": (torch.randn(8, 1, 4, 4, generator=g, dtype=torch.float64), torch.randint(10, (8,), generator=g))}
    return [ScaledClassificationTask(0, data, build_model("mlp", (1, 4, 4), hidden=[3]).double(), batch_size=2,
                                     loss_scale=scale) for scale in (1.0, 2.0)]


class _PlainSGD(LearnedOptimizerBase):
    """A learned optimizer that does not declare itself vmap_safe: a learned step size."""

    arch_name = "plain_sgd_test"

    def __init__(self) -> None:
        super().__init__()
        self.log_lr = torch.nn.Parameter(torch.tensor(-2.0, dtype=torch.float64))

    def init_state(self, params, kinds=None):
        return {}

    def step(self, params, grads, state):
        return {k: p - self.log_lr.exp() * grads[k] for k, p in params.items()}, state

    def coord_state(self, state):
        return {}

    def state_from_coords(self, groups, coords):
        return {}


#: particles that cannot all run at once: (optimizer, tasks, why, how PES splits them). Each task's two particles
#: run batched where they can, the rest one by one; only where none is batched is the estimate bit for bit the
#: sequential one
SPLITS: dict[str, tuple[Callable[[], LearnedOptimizerBase], Callable[[], list[Task]], str, str]] = {
    "mixed_architectures": (LOPTS["small_fc"], lambda: [_quadratic(0), _quadratic(1, dim=3)], "differ in their loss",
                            "in 2 groups (0 one by one)"),
    "mixed_loss_scales": (LOPTS["small_fc"], _scaled, "differ in their loss", "in 2 groups (0 one by one)"),
    "meta_penalty": (LOPTS["hyper_adam"], _penalised, "has a meta_penalty", "in 3 groups (2 one by one)"),
    "not_vmap_safe": (_PlainSGD, _quadratics, "is not vmap_safe", "in 6 groups (6 one by one)"),
}


@pytest.mark.parametrize("case", sorted(SPLITS))
def test_particles_that_cannot_all_be_batched_are_batched_per_task(case, caplog):
    """Tasks of different shapes or losses, a task with a meta-penalty, or an optimizer that is not vmap_safe: PES
    splits the particles into groups (and says so once), and its estimate is the one-by-one estimate (bit for bit
    where every particle ran alone)."""
    make_lopt, tasks, why, split = SPLITS[case]
    lopt = make_lopt().double()
    fresh = tasks()
    reason = obstacle(lopt, [s for pair in _pairs(lopt, fresh) for s in pair])
    assert reason is not None and why in reason
    pes_module._LOGGED.discard(reason)
    with caplog.at_level("INFO", logger=pes_module.__name__):
        bat = _two_truncations(lopt, fresh, batched=True)
    assert caplog.text.count(reason) == 1 and split in caplog.text  # once, not once per truncation
    seq = _two_truncations(lopt, tasks(), batched=False)
    _forget_tasks(seq + bat)
    alone = re.search(r"in (\d+) groups \(\1 one by one\)", split)
    _assert_same_estimates(seq, bat, **({"rtol": 0, "atol": 0} if alone else TOL))


def test_pes_estimator_passes_its_batched_switch(monkeypatch):
    """``PES(batched=False)`` (a plain init argument, as in a config's init_args) unrolls one by one."""
    seen = []
    monkeypatch.setattr(pes_module, "vmapped_unroll",
                        lambda *a, **k: seen.append("batched") or pytest.fail("batched with batched=False"))
    lopt = LOPTS["hyper_adam"]().double()
    pes = PES(sigma=0.1, batched=False)
    states = pes.start(lopt, [init_unroll(lopt, _quadratic(0), 0)])
    est = pes.estimate(lopt, states, 2, None)
    assert est.grad is not None and not seen
