"""benchmarks/memory.py: the saved-for-backward meter, the per-truncation measures and the report lines (seconds)."""

import torch

from benchmarks.memory import SavedTensorMeter, linear_fit, measure, summarize
from l2l_torch.learned_optimizers import LSTMOptimizer
from l2l_torch.tasks.quadratic import QuadraticFamily
from l2l_torch.unroll import init_unroll, truncated_unroll
from research.tools.research_report import memory_lines


def test_meter_counts_each_storage_once_and_only_while_saved():
    a = torch.randn(1000, requires_grad=True)
    meter = SavedTensorMeter()
    with meter():
        y = a * a  # saves ``a`` twice
        z = a[:500].exp()  # saves its result (a new storage); the view of ``a`` is not saved
    assert meter.live_bytes == 4000 + 2000
    del y  # its graph frees what it saved, though ``a`` itself lives on
    assert meter.live_bytes == 2000
    del z
    assert meter.live_bytes == 0
    assert meter.peak == 6000


def test_saved_and_peak_bytes_grow_linearly_with_the_unroll():
    torch.manual_seed(0)
    lopt = LSTMOptimizer()
    task = QuadraticFamily(dim=10, num=50).sample(0)  # 500 coordinates
    warm = truncated_unroll(lopt, init_unroll(lopt, task, 0), 1)  # (the initial zero states share storage)
    warm.meta_loss.backward()
    st = warm.state
    rows = []
    for k in (2, 4, 8):
        row, st = measure(lopt, st, k)
        rows.append(row)
    assert all(r["peak_bytes"] >= r["saved_bytes"] > 0 and r["params"] == 500 for r in rows)
    s = summarize(rows, "quadratic", lopt.state_bytes_per_param())
    assert s["r2"] > 0.9999
    # every step saves at least the two layers' new hidden and cell states (320 B per coordinate)
    assert s["bytes_per_unrolled_step"] >= 500 * lopt.state_bytes_per_param()
    text = "\n".join(memory_lines(s))
    assert "| 8 |" in text and "saved for backward" in text and "LSTM 320 B" in text


def test_linear_fit_is_exact_on_a_line():
    f = linear_fit([10, 20, 40], [5 + 3 * x for x in (10, 20, 40)])
    assert abs(f["bytes_per_unrolled_step"] - 3) < 1e-9 and abs(f["intercept_bytes"] - 5) < 1e-9 and f["r2"] == 1.0


def test_gemm_only_step_runs_the_products_of_the_fused_cell():
    """benchmarks/meta_throughput.py's speed-up ceiling times exactly the LSTM's matrix products: the same shapes as
    a forward and meta-backward of the coordinatewise LSTM (input features without a gradient, as in meta-training)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from benchmarks.meta_throughput import gemm_only_steps_per_s

    class Shapes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func in (torch.ops.aten.mm.default, torch.ops.aten.mm.out, torch.ops.aten.addmm.default):
                a, b = args[-2:] if func is not torch.ops.aten.mm.out else args[:2]  # addmm(bias, a, b): a @ b
                self.seen.append((tuple(a.shape), tuple(b.shape)))
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    lopt, n = LSTMOptimizer(), 300
    net = lopt.nets["all"]
    # states that carry a gradient, as every step's after the first of a truncation does
    hidden = [(torch.randn(20, n, requires_grad=True), torch.randn(20, n, requires_grad=True)) for _ in range(2)]
    with Shapes() as real:
        out, _ = net(torch.randn(2, n), hidden)
        out.sum().backward()
    with Shapes() as timed:
        assert gemm_only_steps_per_s(lopt, n, steps=1) > 0
    per_step = timed.seen[: len(timed.seen) // 4]  # 3 warm-up steps and 1 timed step, all alike
    assert sorted(per_step) == sorted(real.seen)
