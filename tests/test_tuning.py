"""adamw_tuned: the schedule is torch's and exact, the search never sees a held-out seed, evaluate.py records it."""

from __future__ import annotations

import json
import math

import pytest
import torch

from l2l_torch import evaluation, training, tuning
from l2l_torch.checkpoint import save_learned_optimizer
from l2l_torch.learned_optimizers import LSTMOptimizer
from l2l_torch.tasks.base import TEST_SEED_OFFSET, TUNE_SEED_OFFSET
from l2l_torch.tasks.quadratic import QuadraticFamily
from tests.test_cli import run


def _trajectory(make, steps: int = 12) -> tuple[list[torch.Tensor], list[float]]:
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(5))
    opt = make([w])
    out, lrs = [], []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.zero_grad()
        ((w - 1) ** 4).sum().backward()
        opt.step()
        out.append(w.detach().clone())
    return out, lrs


def test_constant_schedule_without_warmup_is_torch_adamw():
    ours, _ = _trajectory(lambda p: tuning.ScheduledAdamW(p, total_steps=12, lr=0.05, beta1=0.8, beta2=0.99,
                                                          weight_decay=0.1))
    ref, _ = _trajectory(lambda p: torch.optim.AdamW(p, lr=0.05, betas=(0.8, 0.99), weight_decay=0.1))
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_warmup_then_schedule_follows_the_formula(schedule):
    total, lr, warm = 20, 0.1, 5  # warmup=0.25 of 20 steps

    def expected(t: int) -> float:  # the learning rate of step t (from 1)
        if t <= warm:
            return lr * t / warm
        return lr if schedule == "constant" else lr * 0.5 * (1 + math.cos(math.pi * (t - warm - 1) / (total - warm)))

    _, lrs = _trajectory(lambda p: tuning.ScheduledAdamW(p, total_steps=total, lr=lr, warmup=0.25, schedule=schedule),
                         steps=total)
    assert lrs == pytest.approx([expected(t) for t in range(1, total + 1)], abs=1e-12)


def test_bad_recipes_are_refused():
    w = [torch.nn.Parameter(torch.zeros(1))]
    with pytest.raises(ValueError, match="warmup"):
        tuning.ScheduledAdamW(w, total_steps=10, warmup=1.0)
    with pytest.raises(ValueError, match="schedule"):
        tuning.ScheduledAdamW(w, total_steps=10, schedule="step")


class _Recording(QuadraticFamily):
    """A quadratic family that records every instance it hands out."""

    seen: list[int] = []

    def sample(self, seed: int):
        self.seen.append(seed)
        return super().sample(seed)


def test_the_search_never_touches_a_held_out_seed_and_is_deterministic():
    fam = _Recording()
    fam.seen = []
    hp, record = tuning.tune_adamw(fam, steps=30, trials=6, seeds=2)
    assert fam.seen and set(fam.seen) <= {TUNE_SEED_OFFSET, TUNE_SEED_OFFSET + 1}
    assert record["seeds"] == [TUNE_SEED_OFFSET, TUNE_SEED_OFFSET + 1]
    assert record["trials"][0]["params"] == tuning.DEFAULT_TRIAL  # torch's defaults are tried first
    cost = record["cost"]
    assert cost["trials"] == 6 == cost["completed"] + cost["pruned"] + sum(
        t["state"] == "fail" for t in record["trials"])
    assert 30 * 2 <= cost["optimizee_steps"] <= 6 * 30 * 2  # at least the first trial in full, at most all
    assert set(hp) == {"lr", "beta1", "beta2", "weight_decay", "warmup", "schedule"}
    assert tuning.tune_adamw(_Recording(), steps=30, trials=6, seeds=2)[0] == hp


def test_evaluation_tunes_on_tuning_seeds_and_tests_on_held_out_ones(monkeypatch):
    calls = []
    real = evaluation.train_optimizee

    def recording(task, factory, steps, seed, **kw):
        calls.append(seed)
        return real(task, factory, steps, seed, **kw)

    monkeypatch.setattr(evaluation, "train_optimizee", recording)  # held-out runs and the lr grid
    monkeypatch.setattr(training, "train_optimizee", recording)  # the search's runs
    fam = QuadraticFamily()
    res = evaluation.evaluate_learned_optimizer(
        fam, lambda g: torch.optim.SGD(g, lr=0.01), steps=10, seeds=3, tune_seeds=2, baselines=["adamw_tuned"],
        learned_name="sgd_as_learned", tune_trials=4)
    tuned, held_out = calls[:-6], calls[-6:]  # the learned row, then adamw_tuned, on 3 held-out seeds each
    assert tuned and all(TUNE_SEED_OFFSET <= s < TUNE_SEED_OFFSET + 2 for s in tuned)
    assert held_out == [TEST_SEED_OFFSET + i for i in range(3)] * 2
    row = res["optimizers"]["adamw_tuned"]
    assert row["lr"] == row["hparams"]["lr"] and row["tuning_cost"]["trials"] == 4
    assert res["tuning"]["adamw_tuned"]["seeds"] == [TUNE_SEED_OFFSET, TUNE_SEED_OFFSET + 1]


def test_evaluate_py_writes_adamw_tuned_with_its_recipe_cost_and_p_values(tmp_path):
    ckpt = tmp_path / "optimizer.pt"
    save_learned_optimizer(LSTMOptimizer(hidden_size=4, preprocess="none"), ckpt,
                           {"task": "quadratic", "global_step": 7, "tasks_per_step": 2, "unroll": 5,
                            "estimator": "PES"})
    out = tmp_path / "eval"
    r = run("evaluate.py", "--task", "quadratic", "--checkpoint", str(ckpt), "--out", str(out), "--steps", "20",
            "--seeds", "3", "--tune-seeds", "1", "--baselines", "adam,adamw_tuned", "--tune-trials", "5",
            "--lr-grid", "0.01,0.1", "--no-updates")
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "results.json").read_text())
    assert set(res["optimizers"]) == {"lstm", "adam", "adam_tuned", "adamw_tuned"}
    row = res["optimizers"]["adamw_tuned"]
    assert set(row["hparams"]) == {"lr", "beta1", "beta2", "weight_decay", "warmup", "schedule"}
    assert row["tuning_cost"]["trials"] == 5 and row["tuning_cost"]["optimizee_steps"] >= 20
    assert res["optimizers"]["adam_tuned"]["tuning_cost"]["optimizee_steps"] == 20 * len(res["tuning"]["adam"])
    # the learned optimizer's meta-training, in the same units: 7 meta-steps x 2 instances x 2 particles x 5 steps
    assert res["optimizers"]["lstm"]["meta_training_cost"]["optimizee_steps"] == 7 * 2 * 2 * 5
    table = (out / "table.md").read_text()
    assert "vs adamw_tuned [95 % CI]" in table and "vs tuned Adam [95 % CI]" in table
    head = table.splitlines()[0].split("|")
    lstm = next(line for line in table.splitlines() if line.startswith("| lstm |")).split("|")
    assert len(lstm) == len(head)
    p_cells = [c.strip() for h, c in zip(head, lstm) if h.strip() == "p (Holm)"]
    assert len(p_cells) == 2 and all(c == "–" or 0 <= float(c) <= 1 for c in p_cells)


def test_evaluate_py_refuses_adamw_tuned_without_tuning(tmp_path):
    ckpt = tmp_path / "optimizer.pt"
    save_learned_optimizer(LSTMOptimizer(hidden_size=4, preprocess="none"), ckpt, {"task": "quadratic"})
    r = run("evaluate.py", "--task", "quadratic", "--checkpoint", str(ckpt), "--out", str(tmp_path / "o"),
            "--baselines", "adamw_tuned", "--no-tune")
    assert r.returncode != 0 and "adamw_tuned" in r.stderr and "Traceback" not in r.stderr


def test_evaluate_py_on_a_fresh_range_of_held_out_instances(tmp_path):
    ckpt = tmp_path / "optimizer.pt"
    save_learned_optimizer(LSTMOptimizer(hidden_size=4, preprocess="none"), ckpt, {"task": "quadratic"})
    common = ("evaluate.py", "--task", "quadratic", "--checkpoint", str(ckpt), "--steps", "5", "--seeds", "2",
              "--no-tune", "--baselines", "adam")
    r = run(*common, "--out", str(tmp_path / "o"), "--test-seeds-from", str(TEST_SEED_OFFSET + 500_000))
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    assert res["first_seed"] == TEST_SEED_OFFSET + 500_000
    assert json.loads((tmp_path / "o" / "updates.json").read_text())["seed"] == TEST_SEED_OFFSET + 500_000
    default = json.loads(run(*common, "--out", str(tmp_path / "d"), "--no-updates").returncode == 0
                         and (tmp_path / "d" / "results.json").read_text())
    assert default["first_seed"] == TEST_SEED_OFFSET
    assert res["optimizers"]["adam"]["per_seed"] != default["optimizers"]["adam"]["per_seed"]  # other instances
    for bad in (TEST_SEED_OFFSET - 1, TUNE_SEED_OFFSET - 1):  # below the test range, or running into tuning's
        r = run(*common, "--out", str(tmp_path / "x"), "--test-seeds-from", str(bad))
        assert r.returncode != 0 and "held-out instances must lie in" in r.stderr and "Traceback" not in r.stderr
