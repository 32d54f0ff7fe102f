"""Task augmentation: each transform changes what the optimizer sees (inputs, loss scale, parameter and gradient
scales) but not the function being optimised; deterministic per seed. Synthetic data: no dataset needed."""

from __future__ import annotations

import pytest
import torch

from l2l_torch.learned_optimizers import SmallFCOptimizer
from l2l_torch.tasks import TaskFamily
from l2l_torch.tasks.image_classification import ImageClassificationTask
from l2l_torch.tasks.models import cnn, mlp
from l2l_torch.tasks.quadratic import QuadraticFamily
from l2l_torch.tasks.task_augmentation import AugmentedFamily, AugmentedTask, InputAffine
from tests.helpers import smoke_unroll

MEAN, STD = (0.3,), (0.4,)


class TinyImages(TaskFamily):
    """Random 1x8x8 "images" in 3 classes, standardised with (MEAN, STD); an MLP (or a CNN) per instance."""

    name = "tiny_images"

    def __init__(self, conv: bool = False) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.data = {s: (torch.randn(40, 1, 8, 8, generator=g), torch.randint(3, (40,), generator=g))
                     for s in ("train", "val", "test")}
        self.conv = conv

    def sample(self, seed: int) -> ImageClassificationTask:
        torch.manual_seed(seed)
        module = cnn((1, 8, 8), [4], num_classes=3) if self.conv else mlp((1, 8, 8), [6], "tanh", 3)
        return ImageClassificationTask(seed, self.data, module, batch_size=16, normalization=(MEAN, STD))


def _fixed(**kw) -> AugmentedFamily:
    """Augmentation with every transform off except those in ``kw``."""
    off = dict(input_modes=["standardized"], loss_scale_min=1.0, loss_scale_max=1.0, param_scale_min=1.0,
               param_scale_max=1.0)
    return AugmentedFamily(TinyImages(), **{**off, **kw})


def _loss_and_grads(task, params, batch):
    params = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    loss, _ = task.loss(params, {}, batch)
    grads = torch.autograd.grad(loss, list(params.values()))
    return loss.detach(), dict(zip(params, grads))


def _batch(task):
    return task.sample_batch("train", torch.Generator().manual_seed(1))


def test_the_same_seed_draws_the_same_augmentation_and_seeds_differ():
    fam = AugmentedFamily(TinyImages())
    a, b = fam.sample(3), fam.sample(3)
    assert a.describe()["augmentation"] == b.describe()["augmentation"]
    assert a.param_scales == b.param_scales and a.loss_scale == b.loss_scale
    draws = [fam.sample(s).describe()["augmentation"] for s in range(30)]
    assert len({d["loss_scale"] for d in draws}) == 30
    assert {d["input"]["mode"] for d in draws} == {"standardized", "raw", "scaled"}
    assert all(0.1 <= d["loss_scale"] <= 10 and 0.1 <= d["param_scales"][0] <= d["param_scales"][1] <= 10
               for d in draws)
    # the wrapped family's own choices for a seed are unchanged (the augmentation draws from its own stream)
    torch.testing.assert_close(a.task.init_params()[0], TinyImages().sample(3).init_params()[0])


def test_reparametrised_loss_at_matched_params_equals_the_original_and_gradients_scale():
    plain = TinyImages().sample(5)
    aug = _fixed(param_scale_min=0.1, param_scale_max=10.0).sample(5)
    assert isinstance(aug, AugmentedTask)
    p0, _ = plain.init_params()
    q0, _ = aug.init_params()
    s = aug.param_scales
    assert len(set(s.values())) == len(s) > 1  # one factor per tensor
    for k in p0:  # the optimizer holds q = p / s: other parameter values for the same network
        torch.testing.assert_close(q0[k], p0[k] / s[k])
    batch = _batch(plain)
    loss_p, g_p = _loss_and_grads(plain, p0, batch)
    loss_q, g_q = _loss_and_grads(aug, q0, batch)
    torch.testing.assert_close(loss_q, loss_p)  # the same function at matched params
    for k in p0:  # ... but gradients s times the original ones
        torch.testing.assert_close(g_q[k], g_p[k] * s[k])
    assert aug.evaluate(q0, {}, "val") == pytest.approx(plain.evaluate(p0, {}, "val"))


def test_loss_scale_scales_training_loss_and_gradients_not_evaluation():
    plain = TinyImages().sample(2)
    aug = _fixed(loss_scale_min=0.1, loss_scale_max=10.0).sample(2)
    c = aug.loss_scale
    assert c != 1.0
    p0, _ = plain.init_params()
    batch = _batch(plain)
    loss_p, g_p = _loss_and_grads(plain, p0, batch)
    loss_a, g_a = _loss_and_grads(aug, p0, batch)
    torch.testing.assert_close(loss_a, c * loss_p)
    for k in p0:
        torch.testing.assert_close(g_a[k], c * g_p[k])
    assert aug.evaluate(p0, {}, "val") == pytest.approx(plain.evaluate(p0, {}, "val"))  # the plain loss


@pytest.mark.parametrize("conv", [False, True])
def test_input_presentations_change_the_inputs_the_network_sees(conv):
    fam = AugmentedFamily(TinyImages(conv), input_modes=["raw", "scaled"], loss_scale_min=1.0, loss_scale_max=1.0,
                          param_scale_min=1.0, param_scale_max=1.0)
    plain = TinyImages(conv).sample(0)
    p0, b0 = plain.init_params()
    modes = set()
    for seed in range(12):
        aug = fam.sample(seed)
        info = aug.describe()["augmentation"]["input"]
        modes.add(info["mode"])
        x = _batch(plain)[0]
        presented = x * STD[0] + MEAN[0] if info["mode"] == "raw" else x * info["scale"]
        out_aug, _ = aug.forward(p0, b0, x)
        out_ref, _ = plain.forward(p0, b0, presented)  # the plain network on the presented inputs
        torch.testing.assert_close(out_aug, out_ref)
        out_plain, _ = plain.forward(p0, b0, x)
        assert not torch.allclose(out_aug, out_plain)  # a different problem for the optimizer
    assert modes == {"raw", "scaled"}
    if not conv:  # the first layer's gradient changes (the optimizer sees other scales)
        batch = _batch(plain)
        _, g_plain = _loss_and_grads(plain, p0, batch)
        _, g_aug = _loss_and_grads(fam.sample(0), p0, batch)
        assert not torch.allclose(g_aug["1.weight"], g_plain["1.weight"])


def test_raw_mode_needs_the_standardisation_and_falls_back_without_it():
    fam = AugmentedFamily(QuadraticFamily(dim=3), input_modes=["raw"])
    assert all(fam.sample(s).describe()["augmentation"]["input"]["mode"] == "standardized" for s in range(5))


def test_input_affine_is_per_channel_and_cached():
    hook = InputAffine((1.0, 2.0), (0.0, 1.0))
    x = torch.ones(2, 2, 3, 3)
    (y,) = hook(None, (x,))
    assert y[:, 0].eq(1).all() and y[:, 1].eq(3).all()
    hook(None, (x,))
    assert len(hook._cache) == 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="input_modes"):
        AugmentedFamily(TinyImages(), input_modes=["sideways"])
    with pytest.raises(ValueError, match="param_scale"):
        AugmentedFamily(TinyImages(), param_scale_min=2.0, param_scale_max=1.0)
    with pytest.raises(TypeError, match="TaskFamily"):
        AugmentedFamily(object())


def test_meta_gradient_flows_through_an_augmented_task():
    smoke_unroll(SmallFCOptimizer(), AugmentedFamily(TinyImages()).sample(4))
    smoke_unroll(SmallFCOptimizer(), AugmentedFamily(QuadraticFamily(dim=3), input_modes=["standardized"]).sample(1))


def test_the_meta_loss_divides_the_loss_scale_out():
    """A loss-scaled instance weighs in the meta-loss as the same instance unscaled (with a zero step, both unrolls
    see the same parameters and batches), in the sequential and in the batched unroll."""
    from torch.nn.utils import parameters_to_vector

    from l2l_torch.estimators import antithetic_pair
    from l2l_torch.unroll import init_unroll, truncated_unroll
    from l2l_torch.vmap_unroll import vmapped_unroll

    lopt = SmallFCOptimizer()
    with torch.no_grad():  # direction output 0: a zero step
        for net in lopt.nets.values():
            net.layers[-1].weight[0].zero_()
            net.layers[-1].bias[0].zero_()
    plain = _fixed().sample(2)
    scaled = _fixed(loss_scale_min=0.1, loss_scale_max=10.0).sample(2)
    assert scaled.loss_scale != 1.0 and scaled.meta_factor() == pytest.approx(1.0 / scaled.loss_scale)
    ref = truncated_unroll(lopt, init_unroll(lopt, plain, 0), 3).meta_loss
    torch.testing.assert_close(truncated_unroll(lopt, init_unroll(lopt, scaled, 0), 3).meta_loss, ref)
    theta = parameters_to_vector(lopt.parameters()).detach()
    pair = antithetic_pair(init_unroll(lopt, scaled, 0))
    for res in vmapped_unroll(lopt, torch.stack([theta, theta]), list(pair), 3):
        torch.testing.assert_close(res.meta_loss, ref)
