"""Persistent Evolution Strategies (l2l_torch.estimators): unbiased over truncations, wired into MetaModule."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils import parameters_to_vector

from l2l_torch.estimators import antithetic_pair, pes_estimate
from l2l_torch.learned_optimizers import LSTMOptimizer
from l2l_torch.unroll import init_unroll, truncated_unroll
from tests.helpers import quadratic64, smoke_train


def _flat_grad(loss, lopt):
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(lopt.parameters()))])


def test_pes_is_unbiased_across_truncations_where_truncated_bptt_is_not():
    """Two 2-step truncations of a 4-step run (float64, tiny LSTM, 1000 antithetic pairs): the sum of the
    two PES estimates approaches the exact gradient of the whole run's meta-loss (through both truncations,
    second order), much closer than truncated BPTT, whose second truncation ignores how theta moved the
    state it starts from."""
    torch.manual_seed(0)
    task = quadratic64()
    lopt = LSTMOptimizer(hidden_size=2, num_layers=1, preprocess="none", output_scale=0.1).double()
    theta0 = parameters_to_vector(lopt.parameters()).detach().clone()
    full = truncated_unroll(lopt, init_unroll(lopt, task, 0), 4, second_order=True)
    exact = _flat_grad(2 * full.meta_loss, lopt)  # mean over 4 steps = (sum of the two 2-step means) / 2
    r1 = truncated_unroll(lopt, init_unroll(lopt, task, 0), 2, second_order=True)
    r2 = truncated_unroll(lopt, r1.state, 2, second_order=True)
    tbptt = _flat_grad(r1.meta_loss, lopt) + _flat_grad(r2.meta_loss, lopt)

    m = 1000
    pairs = [antithetic_pair(init_unroll(lopt, task, 0)) for _ in range(m)]
    e1 = pes_estimate(lopt, pairs, [torch.zeros_like(exact)] * m, 2, sigma=1e-3)
    e2 = pes_estimate(lopt, [(a.state, b.state) for a, b in zip(e1.results[0::2], e1.results[1::2])],
                      e1.xi, 2, sigma=1e-3)
    pes = e1.grad + e2.grad

    def rel(g):
        return float((g - exact).norm() / exact.norm())

    assert rel(tbptt) > 0.3  # the truncation bias this problem has
    assert rel(pes) < rel(tbptt) / 2
    assert torch.equal(parameters_to_vector(lopt.parameters()).detach(), theta0)  # theta untouched
    assert float(e1.variance) > 0 and float(e2.variance) > 0
    # the second truncation's particles continued from the first's states, with accumulated xi
    assert all(a.state.step == 4 for a in e2.results)
    torch.testing.assert_close(e2.xi[0].norm() ** 2 / exact.numel(), torch.tensor(2e-6, dtype=torch.float64),
                               rtol=0.6, atol=0)


def test_antithetic_pair_sees_the_same_batches():
    from l2l_torch.tasks.image_classification import ImageClassificationFamily  # noqa: F401 (import check only)

    torch.manual_seed(0)
    task = quadratic64()
    lopt = LSTMOptimizer(hidden_size=2, num_layers=1).double()
    plus, minus = antithetic_pair(init_unroll(lopt, task, 3))
    assert plus.generator is not minus.generator
    assert torch.equal(torch.rand(3, generator=plus.generator), torch.rand(3, generator=minus.generator))


def test_pes_rejects_bad_arguments():
    lopt = LSTMOptimizer(hidden_size=2, num_layers=1).double()
    pair = antithetic_pair(init_unroll(lopt, quadratic64(), 0))
    with pytest.raises(ValueError, match="sigma"):
        pes_estimate(lopt, [pair], [torch.zeros(1)], 2, sigma=0.0)
    with pytest.raises(ValueError, match="one accumulated perturbation per pair"):
        pes_estimate(lopt, [pair], [], 2, sigma=0.1)


def test_train_with_pes_checkpoints_its_particles(tmp_path):
    """``--model.estimator l2l_torch.estimators.PES`` meta-trains through train.py; the checkpoint holds both particles of each
    pair and their accumulated perturbation, and a resumed run continues from them."""
    import train

    args = ["--trainer.fast_dev_run", "false", "--trainer.max_steps", "2", "--checkpoint_every", "1",
            "--model.val_every", "2", "--model.truncation.horizon", "6", "--model.truncation.unroll", "2",
            "--model.estimator", "l2l_torch.estimators.PES"]
    out = smoke_train("quadratic", tmp_path / "pes", *args)
    assert (out / "optimizer.pt").is_file()
    extra = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["l2l"]
    assert len(extra["optimizees"]) == 2 and len(extra["estimator"]["xi"]) == 1  # one pair: + and - particles
    assert [o["step"] for o in extra["optimizees"]] == [4, 4]
    assert float(extra["estimator"]["xi"][0].norm()) > 0
    train.main(["--task", "quadratic", "--out", str(out), "--ckpt_path", "last", *args[:2],
                "--trainer.max_steps", "3", *args[4:], "--model.val_tasks", "1", "--model.val_horizon", "2",
                "--model.tasks_per_step", "1", "--model.truncation.min_unroll", "null"])
    extra2 = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["l2l"]
    assert [o["step"] for o in extra2["optimizees"]] == [6, 6]  # the same particles went on


def test_pes_needs_a_positive_sigma_and_keeps_its_perturbations_across_a_checkpoint():
    from l2l_torch.estimators import PES

    with pytest.raises(ValueError, match="sigma"):
        PES(sigma=0.0)
    torch.manual_seed(0)
    lopt = LSTMOptimizer(hidden_size=2, num_layers=1, preprocess="none").double()
    pes = PES(sigma=0.1)
    states = pes.start(lopt, [init_unroll(lopt, quadratic64(), 0)])
    assert len(states) == 2 and all(torch.count_nonzero(x) == 0 for x in pes.xi)
    est = pes.estimate(lopt, states, 2, None)
    assert est.grad is not None and not est.meta_loss.requires_grad
    assert "pes_var" not in est.logs  # one pair: no variance over pairs to log
    two = PES(sigma=0.1)
    est2 = two.estimate(lopt, two.start(lopt, [init_unroll(lopt, quadratic64(), s) for s in (0, 1)]), 2, None)
    assert torch.isfinite(est2.logs["pes_var"]) and est2.logs["pes_var"] > 0
    again = PES(sigma=0.1)
    assert again.load_state_dict(pes.state_dict(), "cpu")
    torch.testing.assert_close(again.xi[0], pes.xi[0])
    assert not PES().load_state_dict({}, "cpu")  # nothing to continue: the run starts fresh particles
