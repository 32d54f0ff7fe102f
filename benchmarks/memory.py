"""Peak memory of meta-training against the unroll length, and optimizer state bytes per parameter.

    python benchmarks/memory.py [--unrolls 10,20,40] [--task mlp] [--out results/benchmarks]

Each unroll length runs in a fresh subprocess: it builds the standard Fashion-MNIST MLP task and the
LSTM optimizer, runs one truncation and its meta-backward, and reports the peak resident memory above
what the process held just before the truncation (data and model already loaded). On CUDA it reports
``torch.cuda.max_memory_allocated`` instead. Truncated BPTT keeps every step's activations until the
meta-backward, so the peak should grow linearly with the unroll length; the script fits a line and
prints the bytes per unrolled step and the fit's R².
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def child(unroll: int, task_kind: str) -> None:
    sys.path.insert(0, str(ROOT))
    import torch

    from benchmarks.meta_throughput import make_task
    from l2l_torch.learned_optimizers import LSTMOptimizer
    from l2l_torch.unroll import init_unroll, truncated_unroll

    torch.set_num_threads(1)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    task = make_task(task_kind).to(dev)
    lopt = LSTMOptimizer().to(dev)
    st = init_unroll(lopt, task, 0)
    truncated_unroll(lopt, st, 1).meta_loss.backward()  # warm-up: allocator, lazy init
    before = _rss_bytes()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    r = truncated_unroll(lopt, st, unroll)
    r.meta_loss.backward()
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    print(json.dumps({"unroll": unroll, "peak_bytes": peak, "device": dev.type}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--unrolls", default="10,20,40")
    ap.add_argument("--task", default="mlp")
    ap.add_argument("--out", default="results/benchmarks")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child is not None:
        return child(a.child, a.task)
    rows = []
    for k in (int(x) for x in a.unrolls.split(",")):
        out = subprocess.run([sys.executable, __file__, "--child", str(k), "--task", a.task], capture_output=True,
                             text=True, check=True).stdout.strip().splitlines()[-1]
        rows.append(json.loads(out))
    xs, ys = [r["unroll"] for r in rows], [r["peak_bytes"] for r in rows]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    icept = my - slope * mx
    ss_res = sum((y - (icept + slope * x)) ** 2 for x, y in zip(xs, ys))
    ss_tot = sum((y - my) ** 2 for y in ys) or 1.0
    sys.path.insert(0, str(ROOT))
    from l2l_torch.learned_optimizers import LSTMOptimizer

    state_bytes = LSTMOptimizer().state_bytes_per_param()
    summary = {"task": a.task, "rows": rows, "bytes_per_unrolled_step": slope, "intercept_bytes": icept,
               "r2": 1 - ss_res / ss_tot, "lstm_state_bytes_per_param": state_bytes, "adam_state_bytes_per_param": 8}
    print(f"{'unroll':>6} {'peak MiB':>9}")
    for r in rows:
        print(f"{r['unroll']:>6} {r['peak_bytes'] / 2**20:>9.1f}")
    print(f"linear fit: {slope / 2**20:.2f} MiB per unrolled step (R² = {summary['r2']:.4f})")
    print(f"optimizer state per parameter: LSTM {state_bytes} B, Adam 8 B")
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "memory.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}))


if __name__ == "__main__":
    main()
