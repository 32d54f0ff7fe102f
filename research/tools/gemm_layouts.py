"""Speed of the LSTM optimizer's matrix products in both layouts, on the standard configuration's shapes.

    OMP_NUM_THREADS=1 python -m research.tools.gemm_layouts --threads 1

The coordinate-wise LSTM's gates are ``(4H, K) @ (K, N)`` in this project's coordinate-minor layout (each gate a
contiguous row block; ``l2l_torch.learned_optimizers.lstm.lstm_cell_t``) or ``(N, K) @ (K, 4H)`` in the
coordinate-major layout of ``nn.LSTMCell``. Prints GFLOPS per product (forward gates, input gradient, weight
gradient) for both layers (K = F + H + 1 = 23 and 2H + 1 = 41 at H = 20, N = 15,910), and a large square product
for the CPU's reachable peak.
"""

from __future__ import annotations

import argparse
import time

import torch


def gflops(fn, flop: float, repeats: int) -> float:
    fn()
    fn()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return flop * repeats / (time.perf_counter() - t) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--n", type=int, default=15910, help="coordinates (the standard MLP's parameter count)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    sq = torch.randn(1024, 1024, generator=g)
    print(f"threads {a.threads}; 1024^3 square product: {gflops(lambda: sq @ sq, 2 * 1024**3, 10):.1f} GFLOPS")
    print("K   product                     minor (4H,.)@(.,N)   major (N,.)@(.,4H)   [GFLOPS]")
    for k in (23, 41):
        w, x, d = (torch.randn(s, generator=g) for s in ((80, k), (k, a.n), (80, a.n)))
        xt, wt, dt = x.t().contiguous(), w.t().contiguous(), d.t().contiguous()
        flop = 2 * 80 * k * a.n
        rows = {"gates":         (lambda w=w, x=x: w @ x, lambda xt=xt, wt=wt: xt @ wt),
                "input gradient": (lambda w=w, d=d: w.t() @ d, lambda dt=dt, w=w: dt @ w),
                "weight gradient": (lambda x=x, d=d: x @ d.t(), lambda dt=dt, xt=xt: dt.t() @ xt)}
        for name, (minor, major) in rows.items():
            print(f"{k:<3d} {name:27s} {gflops(minor, flop, a.repeats):18.1f} {gflops(major, flop, a.repeats):20.1f}")


if __name__ == "__main__":
    main()
