"""Per-optimizee horizons (TruncationSchedule.min_horizon): drawn log-uniformly from the task seed, and meta-training
trains each optimizee for exactly its own horizon."""

from __future__ import annotations

import math

import lightning as L
import pytest

from l2l_torch.learned_optimizers import SmallFCOptimizer
from l2l_torch.meta_module import MetaModule
from l2l_torch.tasks.quadratic import QuadraticFamily
from l2l_torch.truncation import TruncationSchedule


def test_horizon_of_is_deterministic_in_the_seed_and_spans_the_range():
    s = TruncationSchedule(horizon=1000, unroll=20, min_horizon=100)
    hs = [s.horizon_of(seed) for seed in range(400)]
    assert hs == [s.horizon_of(seed) for seed in range(400)]
    assert min(hs) >= 100 and max(hs) <= 1000
    assert min(hs) < 130 and max(hs) > 800  # log-uniform: both ends are reached
    assert 0.35 < sum(h < math.sqrt(100 * 1000) for h in hs) / len(hs) < 0.65  # the geometric mean is the median
    assert s.horizon_of(None) == 1000


def test_without_min_horizon_every_optimizee_has_the_schedule_horizon():
    s = TruncationSchedule(horizon=200, unroll=20, horizon_curriculum=100)
    assert {s.horizon_of(seed) for seed in range(20)} == {200}
    assert s.horizon_of(3, meta_step=50) == s.horizon_at(50) == 110


def test_min_horizon_above_the_horizon_is_clipped_and_the_curriculum_caps():
    s = TruncationSchedule(horizon=6, unroll=3, min_horizon=100)  # e.g. a smoke run overriding horizon alone
    assert {s.horizon_of(seed) for seed in range(20)} == {6}
    c = TruncationSchedule(horizon=1000, unroll=20, min_horizon=100, horizon_curriculum=10)
    assert all(c.horizon_of(seed, meta_step=0) == 20 for seed in range(10))  # the curriculum starts at unroll
    assert all(c.horizon_of(seed, meta_step=10) == c.horizon_of(seed) for seed in range(10))
    with pytest.raises(ValueError, match="min_horizon"):
        TruncationSchedule(horizon=100, unroll=20, min_horizon=0)


class _Recording(MetaModule):
    """Records (task seed, optimizee step) after every meta-step."""

    def training_step(self, batch, batch_idx):
        super().training_step(batch, batch_idx)
        self.trace.append((self._state_seeds[0], self._states[0].step))


def test_meta_training_trains_each_optimizee_for_its_own_horizon(tmp_path):
    schedule = TruncationSchedule(horizon=12, unroll=4, min_horizon=3)
    module = _Recording(QuadraticFamily(dim=3), SmallFCOptimizer(), truncation=schedule, val_every=1000, seed=10)
    module.trace = []
    trainer = L.Trainer(max_steps=40, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        default_root_dir=tmp_path)
    trainer.fit(module)
    reached: dict[int, int] = {}
    for seed, step in module.trace:
        reached[seed] = max(reached.get(seed, 0), step)
    finished = list(reached)[:-1]  # the last optimizee may be cut off by max_steps
    assert len(finished) >= 4
    assert [reached[s] for s in finished] == [schedule.horizon_of(s) for s in finished]
    assert len({reached[s] for s in finished}) > 1  # the horizons differ between optimizees
