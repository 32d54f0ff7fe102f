"""ATen's CPU ``tanh`` against the ``2 sigmoid(2x) - 1`` identity that the LSTM cell uses on CPUs (``_tanh``).

    python -m research.tools.tanh_identity [--threads 2] [--n 15910]

Times both on a ``(20, N)`` float32 tensor (the standard benchmark's cell state; ``out=`` buffers, so no allocation
is timed), alternating them, and prints the medians and the largest absolute error of each against float64 ``tanh``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from l2l_torch.learned_optimizers.lstm import _tanh  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=15910)
    ap.add_argument("--repeats", type=int, default=15)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    x, out = torch.randn(20, a.n) * 3, torch.empty(20, a.n)
    fns = {"torch.tanh": lambda: torch.tanh(x, out=out), "2 sigmoid(2x) - 1": lambda: _tanh(x, out=out)}
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(a.repeats):
        for name, fn in fns.items():
            fn()
            t0 = time.perf_counter()
            for _ in range(50):
                fn()
            times[name].append((time.perf_counter() - t0) / 50 * 1e6)
    ref = torch.tanh(x.double())
    print(f"(20, {a.n}) float32, {a.threads} thread(s), median of {a.repeats} x 50 calls")
    for name, fn in fns.items():
        err = (fn().double() - ref).abs().max().item()
        print(f"{name:18} {statistics.median(times[name]):8.1f} us   max abs error {err:.2e}")


if __name__ == "__main__":
    main()
