"""Meta-gradient numerics: float64 gradcheck through an unroll, parity with torch.optim.SGD."""

import pytest
import torch

from l2l_torch.evaluation import baseline_factory, train_optimizee
from l2l_torch.learned_optimizers import LSTMOptimizer
from l2l_torch.learned_optimizers.base import LearnedOptimizerBase, group_by_kind
from l2l_torch.meta_module import MetaModule
from l2l_torch.optim import LearnedOptimizer
from l2l_torch.tasks.quadratic import QuadraticFamily
from l2l_torch.unroll import init_unroll, truncated_unroll
from tests.helpers import gradcheck_meta_gradient, quadratic64, smoke_unroll


class SGDLopt(LearnedOptimizerBase):
    """A 'learned' optimizer that is plain SGD with a learnable log learning rate."""

    arch_name = "sgd_test"

    def __init__(self, lr: float = 0.01) -> None:
        super().__init__(lr=lr)
        self.log_lr = torch.nn.Parameter(torch.tensor(float(lr)).log())

    def init_state(self, params, kinds=None):
        groups = group_by_kind(list(params), kinds, False, ["all"])
        return {"groups": groups, "n": {k: sum(params[n].numel() for n in ns) for k, ns in groups.items()}}

    def step(self, params, grads, state):
        lr = self.log_lr.exp()
        return {k: p - lr * grads[k] for k, p in params.items()}, state

    def coord_state(self, state):  # stateless: zero columns per coordinate
        return {k: torch.zeros(n, 0) for k, n in state["n"].items()}

    def state_from_coords(self, groups, coords):
        return {"groups": groups, "n": {k: c.shape[0] for k, c in coords.items()}}


_quadratic64 = quadratic64


def test_gradcheck_meta_gradient_through_3_step_unroll():
    """The meta-gradient of a 3-step unroll equals finite differences (float64, exact second order)."""
    torch.manual_seed(0)
    lopt = LSTMOptimizer(hidden_size=4, preprocess="none", output_scale=0.1).double()
    assert gradcheck_meta_gradient(lopt, quadratic64())


def test_first_order_meta_gradient_matches_detached_reference():
    """First-order mode: the meta-gradient is that of the unroll with optimizee gradients as constants."""
    torch.manual_seed(0)
    lopt = LSTMOptimizer(hidden_size=4, output_scale=0.1).double()
    task = _quadratic64(1)
    res = truncated_unroll(lopt, init_unroll(lopt, task, 0), 3)
    g_fast = torch.autograd.grad(res.meta_loss, list(lopt.parameters()))
    # reference: precompute the gradient sequence, then replay the unroll with those constants
    params, buffers = task.init_params(0)
    state = lopt.init_state(params)
    losses = []
    for _ in range(3):
        p_det = {k: v.detach().requires_grad_() for k, v in params.items()}
        loss, _ = task.loss(p_det, buffers, task.sample_batch("train", None))
        grads = dict(zip(p_det, torch.autograd.grad(loss, list(p_det.values()))))
        params, state = lopt.step(params, grads, state)
        losses.append(task.loss(params, buffers, task.sample_batch("train", None))[0])
    g_ref = torch.autograd.grad(torch.stack(losses).mean(), list(lopt.parameters()))
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("lr", [0.001, 0.05])
def test_functional_step_agrees_with_torch_sgd(lr):
    """The functional path (learned-optimizer step through LearnedOptimizer) equals torch.optim.SGD."""
    task = QuadraticFamily(num=3).sample(5)
    a = train_optimizee(task, lambda g: LearnedOptimizer(g, lopt=SGDLopt(lr)), 20, 5, keep_params=True)
    b = train_optimizee(task, baseline_factory("sgd", lr), 20, 5, keep_params=True)
    torch.testing.assert_close(a.losses, b.losses, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a.params["x"], b.params["x"], rtol=1e-5, atol=1e-6)
    # and the unroll's functional step, too
    lopt = SGDLopt(lr)
    res = truncated_unroll(lopt, init_unroll(lopt, task, 5), 20)
    torch.testing.assert_close(res.state.params["x"], b.params["x"], rtol=1e-5, atol=1e-6)


def test_train_optimizee_average_evaluates_the_moving_average_of_the_iterates():
    """``average=decay``: final metrics and params are those of torch's EMA of the iterates (from the initial
    params), the training losses stay the iterates'; decay 0 is the last iterate."""
    task = QuadraticFamily(num=3).sample(5)
    sgd = baseline_factory("sgd", 0.05)
    last = train_optimizee(task, sgd, 6, 5, keep_params=True)
    avg = train_optimizee(task, sgd, 6, 5, keep_params=True, average=0.5)
    iterates = [train_optimizee(task, sgd, t, 5, keep_params=True).params["x"] for t in range(7)]
    ema = iterates[0]
    for x in iterates[1:]:
        ema = 0.5 * ema + 0.5 * x
    torch.testing.assert_close(avg.params["x"], ema)
    assert not torch.allclose(avg.params["x"], last.params["x"])
    torch.testing.assert_close(avg.losses, last.losses)
    buffers = task.init_params(5)[1]
    for k, v in task.evaluate({"x": ema}, buffers, "train").items():
        assert avg.final[f"train_{k}"] == pytest.approx(v, rel=1e-6)
    zero = train_optimizee(task, sgd, 6, 5, keep_params=True, average=0.0)
    torch.testing.assert_close(zero.params["x"], last.params["x"])
    assert zero.final == pytest.approx(last.final)


def test_unroll_does_not_modify_its_input_state():
    lopt = LSTMOptimizer()
    task = QuadraticFamily().sample(0)
    st = init_unroll(lopt, task, 0)
    x0 = st.params["x"].clone()
    res = truncated_unroll(lopt, st, 4)
    assert torch.equal(st.params["x"], x0)
    assert res.state.step == 4 and not res.state.params["x"].requires_grad
    assert res.losses.shape == (4,)


def test_smoke_unroll_quadratic():
    smoke_unroll(LSTMOptimizer(), QuadraticFamily().sample(0))


def test_loss_weights_weight_the_meta_loss():
    lopt = LSTMOptimizer()
    task = QuadraticFamily().sample(0)
    st = init_unroll(lopt, task, 0)
    w = torch.tensor([0.0, 0.0, 1.0])
    res = truncated_unroll(lopt, st, 3, weights=w)
    torch.testing.assert_close(res.meta_loss.detach(), res.losses[2] / 3)


def test_meta_module_loss_weights_smoke(tmp_path):
    from tests.helpers import smoke_train

    smoke_train("quadratic", tmp_path, "--model.truncation.loss_weights", "[0.5, 1.0, 2.0]")


def test_truncation_loss_weights():
    from l2l_torch.truncation import TruncationSchedule

    linear = TruncationSchedule(horizon=8, unroll=4, loss_weights="linear")
    torch.testing.assert_close(linear.weights(4, 0, 8, "cpu"), torch.tensor([0.4, 0.8, 1.2, 1.6]))
    torch.testing.assert_close(linear.weights(2, 6, 8, "cpu"), torch.tensor([0.4, 0.8]))  # a shorter truncation
    whole = TruncationSchedule(horizon=8, unroll=4, loss_weights="horizon_linear")  # 2 s / (T + 1), s = 5 ... 8
    torch.testing.assert_close(whole.weights(4, 4, 8, "cpu"), torch.tensor([10.0, 12.0, 14.0, 16.0]) / 9)
    assert TruncationSchedule(horizon=8, unroll=4).weights(4, 0, 8, "cpu") is None
    with pytest.raises(ValueError, match="linear"):
        TruncationSchedule(horizon=8, unroll=4, loss_weights="ramp")
    with pytest.raises(ValueError, match="one weight per unrolled step"):
        TruncationSchedule(horizon=8, unroll=4, loss_weights=[1.0, 2.0])


def test_val_seed_moves_validation_to_other_instances():
    with pytest.raises(ValueError, match="val_seed"):
        MetaModule(QuadraticFamily(), LSTMOptimizer(), val_seed=-1)
    with pytest.raises(ValueError, match="val_seed"):
        MetaModule(QuadraticFamily(), LSTMOptimizer(), val_seed=999_999)
    seen = []

    class Recording(QuadraticFamily):
        def sample(self, seed):
            seen.append(seed)
            return super().sample(seed)

    mod = MetaModule(Recording(), LSTMOptimizer(), val_tasks=2, val_horizon=2, val_seed=500)
    mod.log = lambda *a, **k: None  # no trainer here
    for i in range(2):
        mod.validation_step(i, i)
    assert seen == [1_000_500, 1_000_501]


def test_validation_loss_is_meta_weighted_in_a_weighted_mixture():
    """Checkpoint selection weighs each family's held-out loss as meta-training does (FamilyMixture's
    meta_weights); with the default weights it is the plain held-out loss."""
    from l2l_torch.tasks.family_mixture import FamilyMixture

    logged, lopt = {}, LSTMOptimizer()
    for weights in ([1.0], [2.5]):
        mod = MetaModule(FamilyMixture([QuadraticFamily()], meta_weights=weights), lopt, val_tasks=1, val_horizon=3)
        mod.log = lambda name, value, **k: logged.setdefault(name, []).append(value)
        mod.validation_step(0, 0)
    plain, weighted = logged["val/loss"]
    assert weighted == pytest.approx(2.5 * plain)
    # and per family, unweighted
    assert logged["val/loss_0_quadratic"] == pytest.approx([plain, plain])
    assert logged["val/train_loss"][0] == logged["val/train_loss"][1]


def test_warmup_adam_scales_the_learning_rate_linearly():
    from l2l_torch.evaluation import BASELINES, WarmupAdam

    w = torch.nn.Parameter(torch.zeros(3))
    opt = WarmupAdam([w], lr=0.1, warmup=4)
    lrs = []
    for t in range(6):
        w.grad = torch.ones(3)
        opt.step()
        lrs.append(opt.param_groups[0]["lr"])
        if t == 0:  # Adam's first step moves every coordinate by lr: here a quarter of 0.1
            torch.testing.assert_close(w.detach(), torch.full((3,), -0.025))
    assert lrs == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1])
    with pytest.raises(ValueError, match="warmup"):
        WarmupAdam([w], lr=0.1, warmup=0)
    # as the evaluate.py baseline "adam_warmup": unlike Adam during the warm-up, and it still trains
    task = QuadraticFamily().sample(3)
    a = train_optimizee(task, baseline_factory("adam_warmup", 0.05), 30, 3, keep_params=True)
    b = train_optimizee(task, baseline_factory("adam", 0.05), 30, 3, keep_params=True)
    assert BASELINES["adam_warmup"][0] is WarmupAdam
    assert not torch.allclose(a.losses[1:10], b.losses[1:10])
    assert torch.isfinite(a.losses).all() and float(a.losses[-1]) < float(a.losses[0])


def test_meta_module_horizon_linear_weights_follow_the_optimizee_step(tmp_path, monkeypatch):
    import l2l_torch.estimators.truncated_bptt as tbptt
    from tests.helpers import smoke_train

    seen = []

    def recording(lopt, state, k, weights=None, *args):
        seen.append((state.step, weights.tolist()))
        return truncated_unroll(lopt, state, k, weights, *args)

    monkeypatch.setattr(tbptt, "truncated_unroll", recording)
    smoke_train("quadratic", tmp_path, "--model.truncation.loss_weights", "horizon_linear", "--trainer.fast_dev_run", "2")
    # horizon 6, truncations of 3: steps 1-3 then 4-6 of the horizon, weights 2 s / 7
    assert [s for s, _ in seen] == [0, 3]
    torch.testing.assert_close(torch.tensor([w for _, w in seen]), torch.tensor([[2, 4, 6], [8, 10, 12]]) / 7)


def test_meta_lr_schedule_comes_from_the_lr_scheduler_section(tmp_path, monkeypatch):
    """``lr_scheduler: CosineAnnealingLR`` (LightningCLI) sets the meta-optimizer's lr of meta-step s to
    lr (1 + cos(pi s / T_max)) / 2, stepped once per meta-step under manual optimization."""
    from tests.helpers import smoke_train

    lrs = []
    step = torch.optim.Adam.step

    def recording(self, *args, **kwargs):
        lrs.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording)
    smoke_train("quadratic", tmp_path, "--optimizer.lr", "0.01", "--lr_scheduler",
                "torch.optim.lr_scheduler.CosineAnnealingLR", "--lr_scheduler.T_max", "2", "--trainer.fast_dev_run", "3")
    torch.testing.assert_close(torch.tensor(lrs), torch.tensor([0.01, 0.005, 0.0]), atol=1e-12, rtol=0)


def test_non_differentiable_unroll_gives_the_same_values_without_a_graph():
    """``differentiable=False`` (PES's particles) frees each step's graph: same losses, params and optimizer
    state as the differentiable unroll, and nothing to backpropagate."""
    torch.manual_seed(0)
    lopt, task = LSTMOptimizer(hidden_size=4, preprocess="none"), QuadraticFamily(num=2).sample(0)
    a = truncated_unroll(lopt, init_unroll(lopt, task, 0), 5)
    b = truncated_unroll(lopt, init_unroll(lopt, task, 0), 5, differentiable=False)
    assert a.meta_loss.requires_grad and not b.meta_loss.requires_grad
    torch.testing.assert_close(a.meta_loss.detach(), b.meta_loss, rtol=0, atol=0)
    torch.testing.assert_close(a.losses, b.losses, rtol=0, atol=0)
    for k in a.state.params:
        torch.testing.assert_close(a.state.params[k].detach(), b.state.params[k].detach(), rtol=0, atol=0)
