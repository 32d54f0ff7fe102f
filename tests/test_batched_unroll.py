"""The speed brief parity: several optimizees stepped by one learned-optimizer call (``batched_unroll``) give the
same per-task updates, optimizer states and meta-gradient as unrolling the tasks one by one."""

import pytest
import torch

from l2l_torch.learned_optimizers import LSTMOptimizer
from l2l_torch.unroll import batched_unroll, init_unroll, truncated_unroll
from tests.helpers import needs_data, quadratic64, small_fashion_mnist_mlps


def _compare(lopt, tasks, truncations: int = 2, steps: int = 3, **tol):
    """Run ``truncations`` truncations both ways; compare params, hidden states, losses and meta-gradients."""
    loop = [init_unroll(lopt, t, i) for i, t in enumerate(tasks)]
    batch = [init_unroll(lopt, t, i) for i, t in enumerate(tasks)]
    for _ in range(truncations):
        ref = [truncated_unroll(lopt, s, steps) for s in loop]
        g_ref = torch.autograd.grad(torch.stack([r.meta_loss for r in ref]).mean(), list(lopt.parameters()),
                                    allow_unused=True, materialize_grads=True)
        out = batched_unroll(lopt, batch, steps)
        g_out = torch.autograd.grad(torch.stack([r.meta_loss for r in out]).mean(), list(lopt.parameters()),
                                    allow_unused=True, materialize_grads=True)
        for a, b in zip(g_out, g_ref, strict=True):
            torch.testing.assert_close(a, b, **tol)
        for r, o in zip(ref, out, strict=True):
            torch.testing.assert_close(o.losses, r.losses, **tol)
            torch.testing.assert_close(o.update_size, r.update_size, **tol)
            for k in r.state.params:
                torch.testing.assert_close(o.state.params[k], r.state.params[k], **tol)
            for kind, layers in r.state.lopt_state["hidden"].items():
                for (h1, c1), (h2, c2) in zip(o.state.lopt_state["hidden"][kind], layers, strict=True):
                    torch.testing.assert_close(h1, h2, **tol)
                    torch.testing.assert_close(c1, c2, **tol)
            assert o.state.step == r.state.step
        loop, batch = [r.state for r in ref], [o.state for o in out]


@pytest.mark.parametrize("norm", ["none", "layer"])
def test_batched_unroll_matches_one_by_one_quadratics(norm):
    torch.manual_seed(0)
    lopt = LSTMOptimizer(hidden_size=5, normalization=norm).double()
    _compare(lopt, [quadratic64(s) for s in range(3)])


@needs_data("FashionMNIST")
def test_batched_unroll_matches_one_by_one_mlp_per_kind(tmp_path, monkeypatch):
    """float32, a real MLP on Fashion-MNIST batches, one LSTM per kind: the fast path's tolerance."""
    fam = small_fashion_mnist_mlps(tmp_path, monkeypatch)
    torch.manual_seed(0)
    lopt = LSTMOptimizer(hidden_size=6, per_kind=True)
    _compare(lopt, [fam.sample(s) for s in range(2)], rtol=1e-5, atol=1e-6)


def test_batched_unroll_refuses_coordinate_mixing_optimizer():
    lopt = LSTMOptimizer(hidden_size=3, normalization="batch").double()
    assert not lopt.tasks_batchable
    with pytest.raises(ValueError, match="tasks_batchable"):
        batched_unroll(lopt, [init_unroll(lopt, quadratic64(0), 0)], 2)
