"""Figures quoted in COMMAND.md and the README about the PES estimator, recomputed from committed code and files.

    python research/experiments/quadratic_u5_pes/pes_figures.py      # writes research/experiments/quadratic_u5_pes/pes_figures.json

1. Bias check (the setting of tests/test_estimators.py): relative error against the exact whole-run gradient of
   truncated BPTT and of PES (1,000 antithetic pairs) through two 2-step truncations, float64.
2. Variance over the committed run: median of meta_train/pes_var and of ||g||^2 / (P * var) (meta_training.json).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from l2l_torch.estimators import antithetic_pair, pes_estimate  # noqa: E402
from l2l_torch.learned_optimizers import LSTMOptimizer  # noqa: E402
from l2l_torch.unroll import init_unroll, truncated_unroll  # noqa: E402
from tests.helpers import quadratic64  # noqa: E402


def flat_grad(loss, lopt):
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(lopt.parameters()))])


def bias_check(pairs: int = 1000) -> dict:
    torch.manual_seed(0)
    task = quadratic64()
    lopt = LSTMOptimizer(hidden_size=2, num_layers=1, preprocess="none", output_scale=0.1).double()
    full = truncated_unroll(lopt, init_unroll(lopt, task, 0), 4, second_order=True)
    exact = flat_grad(2 * full.meta_loss, lopt)
    r1 = truncated_unroll(lopt, init_unroll(lopt, task, 0), 2, second_order=True)
    r2 = truncated_unroll(lopt, r1.state, 2, second_order=True)
    tbptt = flat_grad(r1.meta_loss, lopt) + flat_grad(r2.meta_loss, lopt)
    ps = [antithetic_pair(init_unroll(lopt, task, 0)) for _ in range(pairs)]
    e1 = pes_estimate(lopt, ps, [torch.zeros_like(exact)] * pairs, 2, sigma=1e-3)
    e2 = pes_estimate(lopt, [(a.state, b.state) for a, b in zip(e1.results[0::2], e1.results[1::2])],
                      e1.xi, 2, sigma=1e-3)

    def rel(g):
        return float((g - exact).norm() / exact.norm())

    return {"pairs": pairs, "theta_params": exact.numel(), "rel_error_truncated_bptt": rel(tbptt),
            "rel_error_pes": rel(e1.grad + e2.grad)}


def variance_summary() -> dict:
    d = json.loads((Path(__file__).parent / "meta_training.json").read_text())["scalars"]
    n = sum(p.numel() for p in LSTMOptimizer(preprocess="none").parameters())
    var = {int(s): v for s, v in d["meta_train/pes_var"]}
    gnorm = {int(s): v for s, v in d["meta_train/grad_norm"]}
    ratio = sorted(gnorm[s] ** 2 / (n * var[s]) for s in var if s in gnorm and var[s] > 0)
    return {"theta_params": n, "logged_points": len(ratio), "pes_var_first": d["meta_train/pes_var"][0][1],
            "pes_var_median": statistics.median(v for _, v in d["meta_train/pes_var"]),
            "snr_median": statistics.median(ratio), "snr_p10": ratio[len(ratio) // 10],
            "snr_p90": ratio[9 * len(ratio) // 10]}


if __name__ == "__main__":
    out = {"bias_check": bias_check(), "variance": variance_summary(),
           "command": "python research/experiments/quadratic_u5_pes/pes_figures.py"}
    (Path(__file__).parent / "pes_figures.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
