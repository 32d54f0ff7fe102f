"""LearnedOptimizer with torch's LR schedulers, decoupled weight decay, and inside a LightningModule."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn

from l2l_torch import LearnedOptimizer, LSTMOptimizer
from tests.helpers import tiny_mlp


def _lopt() -> LSTMOptimizer:
    torch.manual_seed(1)
    return LSTMOptimizer(hidden_size=8, preprocess="log_sign", output_scale=0.1)


def _step(model: nn.Module, opt: torch.optim.Optimizer, t: int) -> None:
    g = torch.Generator().manual_seed(100 + t)
    opt.zero_grad()
    model(torch.randn(6, 4, generator=g)).pow(2).mean().backward()
    opt.step()


def _updates(lr_of_step: list[float], weight_decay: float = 0.0) -> list[list[torch.Tensor]]:
    """Parameter changes per step of a tiny MLP, with the group's lr set to ``lr_of_step[t]`` before step t."""
    model, lopt = tiny_mlp(), _lopt()
    opt = LearnedOptimizer(model.parameters(), lopt=lopt, weight_decay=weight_decay)
    out = []
    for t, lr in enumerate(lr_of_step):
        opt.param_groups[0]["lr"] = lr
        before = [p.detach().clone() for p in model.parameters()]
        _step(model, opt, t)
        out.append([p.detach() - b for p, b in zip(model.parameters(), before)])
    return out


def test_cosine_schedule_wraps_it_and_scales_the_learned_step():
    model, lopt = tiny_mlp(), _lopt()
    opt = LearnedOptimizer(model.parameters(), lopt=lopt)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)
    lrs = []
    for t in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        _step(model, opt, t)
        sched.step()
    assert lrs[0] == 1.0 and lrs[1] < 1.0 and lrs[3] < lrs[2]
    # the same multipliers set by hand give the same parameters: the scheduler drives the update size
    ref = tiny_mlp()
    ref_opt = LearnedOptimizer(ref.parameters(), lopt=_lopt())
    for t, lr in enumerate(lrs):
        ref_opt.param_groups[0]["lr"] = lr
        _step(ref, ref_opt, t)
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b)


def test_lr_zero_freezes_and_lr_scales_the_first_update():
    full, = _updates([1.0])
    half, = _updates([0.5])
    frozen, = _updates([0.0])
    for f, h, z in zip(full, half, frozen):
        torch.testing.assert_close(h, 0.5 * f)
        assert torch.count_nonzero(z) == 0
    assert any(torch.count_nonzero(f) for f in full)


def test_decoupled_weight_decay():
    model, lopt = tiny_mlp(), _lopt()
    before = [p.detach().clone() for p in model.parameters()]
    plain, = _updates([0.5])
    opt = LearnedOptimizer(model.parameters(), lopt=lopt, lr=0.5, weight_decay=0.1)
    _step(model, opt, 0)
    for p, b, u in zip(model.parameters(), before, plain):
        torch.testing.assert_close(p.detach(), b * (1 - 0.5 * 0.1) + u)


def test_state_dict_round_trip_keeps_lr_and_weight_decay():
    model = tiny_mlp()
    opt = LearnedOptimizer(model.parameters(), lopt=_lopt(), lr=0.3, weight_decay=0.01)
    _step(model, opt, 0)
    other = LearnedOptimizer(tiny_mlp().parameters(), lopt=_lopt())
    other.load_state_dict(opt.state_dict())
    assert other.param_groups[0]["lr"] == 0.3 and other.param_groups[0]["weight_decay"] == 0.01


def test_rejects_negative_lr_or_weight_decay():
    with pytest.raises(ValueError, match=">= 0"):
        LearnedOptimizer(tiny_mlp().parameters(), lopt=_lopt(), lr=-1.0)
    with pytest.raises(ValueError, match=">= 0"):
        LearnedOptimizer(tiny_mlp().parameters(), lopt=_lopt(), weight_decay=-0.1)


class _Regression(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = tiny_mlp()

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        opt = LearnedOptimizer(self.parameters(), lopt=_lopt())
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)}


def test_lightning_configure_optimizers_with_a_scheduler(tmp_path):
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(32, 4, generator=g), torch.randn(32, 2, generator=g))
    module = _Regression()
    before = [p.detach().clone() for p in module.parameters()]
    trainer = L.Trainer(max_epochs=4, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=32))
    opt = trainer.optimizers[0]
    assert isinstance(opt, LearnedOptimizer) and opt.param_groups[0]["lr"] == pytest.approx(0.25)  # 4 epochs, halved twice
    assert any(not torch.equal(p, b) for p, b in zip(module.parameters(), before))
