"""A/B of the LSTM cell backward's elementwise kernel, inside whole meta-training steps, in one process.

    OMP_NUM_THREADS=1 L2L_DATA_DIR=../shared/data python -m research.tools.cell_grads_ab --threads 1 --repeats 16

``current``: :func:`l2l_torch.learned_optimizers.lstm._cell_grads` as shipped (the gate gradient ``(4H, N)``
written by one compiled ``stack``, a fresh tensor per call). ``cat_into_buffer``: the previous kernel
(a ``cat`` of the four gate blocks copied into a reused scratch buffer). Both are compiled the same way and checked
equal before timing. Timed first alone (ms per call at H = 20, N = 15,910, cycling through input sets that together
exceed the CPU's caches, as in a step where the inputs were written long before), then inside whole steps:
truncated-BPTT meta-training of the standard configuration (Fashion-MNIST MLP
784-20-10 sigmoid, batch 128, unroll 20, the default LSTMOptimizer), ``--truncations`` truncations per run, the two
kernels alternated run by run, medians and the pairwise wins printed. Machines here are noisy: read the paired
wins beside the ratio of medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import l2l_torch.learned_optimizers.lstm as lstm  # noqa: E402
from benchmarks.meta_throughput import make_task, ours_steps_per_s  # noqa: E402
from l2l_torch.learned_optimizers import LSTMOptimizer  # noqa: E402


def _cat_into_buffer(acts, tc, c, dh, dc, d):
    """The earlier kernel: same maths, the four gate blocks ``cat``-ed and copied into ``d`` (4H, N)."""
    i, f, o, g = acts.chunk(4, 0)
    dct = dh * o * (1 - tc * tc) + dc
    d.copy_(torch.cat([dct * g * i * (1 - i), dct * c * f * (1 - f), dh * tc * o * (1 - o), dct * i * (1 - g * g)]))
    return dct * f


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=16, help="timed runs per kernel")
    ap.add_argument("--truncations", type=int, default=5, help="truncations of 20 steps per timed run")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    old = torch.compile(_cat_into_buffer, dynamic=True)

    def cat_into_buffer(acts, tc, c, dh, dc):
        d = lstm._scratch("d", (acts.shape[0], c.shape[1]), c)
        return d, old(acts, tc, c, dh, dc, d)

    kernels = {"current": torch.compile(lstm._cell_grads, dynamic=True), "cat_into_buffer": cat_into_buffer}
    g = torch.Generator().manual_seed(0)
    acts = torch.rand(80, 500, generator=g)
    tc, c, dh, dc = (torch.rand(20, 500, generator=g) * 2 - 1, *torch.randn(3, 20, 500, generator=g))
    for want, got in zip(kernels["cat_into_buffer"](acts, tc, c, dh, dc), kernels["current"](acts, tc, c, dh, dc)):
        torch.testing.assert_close(got, want)

    kernel_ms = {k: [] for k in kernels}
    sets = [(torch.rand(80, 15910), torch.rand(20, 15910) * 2 - 1, *torch.randn(3, 20, 15910)) for _ in range(8)]
    for fn in kernels.values():
        fn(*sets[0])
    for _ in range(a.repeats):
        for name, fn in kernels.items():
            t0 = time.perf_counter()
            for args in sets * 4:
                fn(*args)
            kernel_ms[name].append(1e3 * (time.perf_counter() - t0) / (4 * len(sets)))
    for name, v in kernel_ms.items():
        print(f"{name:16} alone: median {statistics.median(v):.3f} ms per call (H 20, N 15910, 8 input sets of 10 MB)")

    task = make_task("mlp")
    torch.manual_seed(0)
    lopt = LSTMOptimizer()
    meta_opt = torch.optim.Adam(lopt.parameters(), lr=1e-3)

    def run(truncations: int) -> float:
        return ours_steps_per_s(lopt, meta_opt, [task], truncations, unroll=20)

    for fn in kernels.values():  # compile and warm up both
        lstm._KERNEL["grads"] = fn
        run(2)
    runs: dict[str, list[float]] = {k: [] for k in kernels}
    for _ in range(a.repeats):
        for name, fn in kernels.items():
            lstm._KERNEL["grads"] = fn
            runs[name].append(run(a.truncations))
    lstm._KERNEL.pop("grads")
    for name, v in runs.items():
        print(f"{name:16} median {statistics.median(v):6.2f} optimizee steps/s   runs: {' '.join(f'{x:.1f}' for x in v)}")
    wins = sum(x > y for x, y in zip(runs["current"], runs["cat_into_buffer"]))
    ratio = statistics.median(runs["current"]) / statistics.median(runs["cat_into_buffer"])
    print(f"current / cat_into_buffer: {ratio:.3f} (ratio of medians); current faster in {wins} of {a.repeats} pairs")


if __name__ == "__main__":
    main()
