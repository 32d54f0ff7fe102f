"""Memory of meta-training against the unroll length, and optimizer state bytes per parameter.

    python benchmarks/memory.py [--unrolls 10,20,40] [--task mlp] [--recompute-gates] [--out DIR]

Truncated BPTT keeps what every unrolled step saved for backward until the meta-backward, so the memory
of one truncation grows linearly with the unroll length. Each unroll length runs in a fresh subprocess
that builds the standard Fashion-MNIST MLP task (784-20-10 sigmoid, batch 128) and the LSTM optimizer
(two layers, 20 hidden units, log/sign preprocessing), runs a 1-step warm-up truncation (lazy init,
the fused cell's scratch buffers), then measures three things:

1. ``saved_bytes`` (exact, the basis of the linearity claim): bytes of the tensors that autograd holds
   for the meta-backward when the truncation's forward ends, via
   :func:`torch.autograd.graph.saved_tensors_hooks`. Storages are counted once each
   (``untyped_storage()``), however many tensors or views of them are saved, and only while a graph
   holds them: what a graph saved stops counting when that graph is freed during the forward.
2. ``peak_bytes``: the allocator's peak during the truncation and its meta-backward, above what was
   allocated when it started. On CUDA, ``torch.cuda.max_memory_allocated``; on CPU the peak of the
   running total of the allocations that ``torch.profiler`` (``profile_memory=True``) records in that
   window (tensors allocated before it are left out, also when they are freed in it). This includes
   transient tensors (the optimizee's gradients, the LSTM's backward temporaries), so it is at least
   ``saved_bytes``.
3. ``peak_rss_bytes`` (coarse): the process's peak resident memory during the same truncation and
   meta-backward above its resident memory just before (peak reset through ``/proc/self/clear_refs``;
   ``null`` where that is unavailable). The C allocator reuses freed pages and the fused cell reuses its
   scratch buffers, so this moves in page-sized and arena-sized steps and is not used for the fit.

It fits a line (bytes per unrolled step, intercept, R²) to each measure, prints a table and, with
``--out DIR``, writes ``DIR/memory.json`` (``memory_recompute.json`` with ``--recompute-gates``; no file without it); the top-level ``bytes_per_unrolled_step``, ``intercept_bytes`` and ``r2`` are the fit of
``saved_bytes``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import add_out_argument, write_json  # noqa: E402

MEASURES = ("saved_bytes", "peak_bytes", "peak_rss_bytes")


class SavedTensorMeter:
    """Bytes of the unique storages referenced by the tensors that autograd graphs hold for backward.

    Use ``with meter(): ...``. A storage counts once, however many saved tensors or views refer to it,
    and only while a graph holds one of them: each saved tensor is wrapped in an object that only the
    graph references, so its count drops when the graph frees it (a graph nothing refers to any more,
    or a backward that used it), whoever else still holds the tensor.
    """

    def __init__(self) -> None:
        self._live: dict[int, list[int]] = {}  # storage data_ptr -> [nbytes, saved tensors alive]
        self.peak = 0
        self.saved = 0  # tensors saved (with repeats)

    @property
    def live_bytes(self) -> int:
        return sum(v[0] for v in self._live.values())

    def _release(self, key: int) -> None:
        entry = self._live.get(key)
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:
                del self._live[key]

    def _pack(self, t: torch.Tensor) -> _Saved:
        s = t.untyped_storage()
        key = s.data_ptr()
        entry = self._live.setdefault(key, [0, 0])
        entry[0] = max(entry[0], s.nbytes())
        entry[1] += 1
        self.saved += 1
        held = _Saved(t.detach())  # only the graph references it (detached: no cycle through grad_fn)
        weakref.finalize(held, self._release, key)
        self.peak = max(self.peak, self.live_bytes)
        return held

    @contextlib.contextmanager
    def __call__(self) -> Iterator[SavedTensorMeter]:
        with torch.autograd.graph.saved_tensors_hooks(self._pack, lambda held: held.t):
            yield self


class _Saved:
    __slots__ = ("t", "__weakref__")

    def __init__(self, t: torch.Tensor) -> None:
        self.t = t


def _status_bytes(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (``VmHWM``) of this process; False where Linux does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _cpu_alloc_peak(prof) -> int:
    """Peak of the running total of the CPU allocations that ``prof`` recorded (allocations minus frees)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "trace.json"
        prof.export_chrome_trace(str(path))
        events = json.loads(path.read_text())["traceEvents"]
    mem = sorted((float(e["ts"]), int(e["args"]["Bytes"])) for e in events
                 if e.get("name") == "[memory]" and e.get("args", {}).get("Device Type", 0) == 0)
    total = peak = 0
    for _, nbytes in mem:
        total += nbytes
        peak = max(peak, total)
    return peak


def measure(lopt, state, unroll: int, rss: bool = False) -> tuple[dict, object]:
    """Measure one truncation of ``unroll`` steps from ``state`` and its meta-backward, twice: first
    ``saved_bytes`` (and with ``rss`` the peak RSS, which needs the first truncation of a fresh
    process), then ``peak_bytes`` on the next truncation. Returns the row and the state after both."""
    from l2l_torch.unroll import truncated_unroll

    dev = next(iter(state.params.values())).device
    row: dict = {"unroll": unroll, "device": dev.type, "params": sum(v.numel() for v in state.params.values())}
    meter = SavedTensorMeter()
    if rss:
        reset = _reset_peak_rss()
        before = _status_bytes("VmRSS")
    with meter():
        r = truncated_unroll(lopt, state, unroll)
    row["saved_bytes"] = meter.live_bytes
    row["saved_tensors"] = meter.saved
    lopt.zero_grad()
    r.meta_loss.backward()
    if rss:
        hwm = _status_bytes("VmHWM")
        row["peak_rss_bytes"] = hwm - before if reset and hwm is not None and before is not None else None
    state = r.state
    del r
    lopt.zero_grad()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
        r = truncated_unroll(lopt, state, unroll)
        r.meta_loss.backward()
        torch.cuda.synchronize(dev)
        row["peak_bytes"] = torch.cuda.max_memory_allocated(dev) - base
        row["peak_method"] = "torch.cuda.max_memory_allocated"
    else:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            r = truncated_unroll(lopt, state, unroll)
            r.meta_loss.backward()
        row["peak_bytes"] = _cpu_alloc_peak(prof)
        row["peak_method"] = "torch.profiler profile_memory"
    return row, r.state


def child(unroll: int, task_kind: str, recompute: bool) -> None:
    from benchmarks.meta_throughput import make_task
    from l2l_torch.learned_optimizers import LSTMOptimizer
    from l2l_torch.unroll import init_unroll, truncated_unroll

    torch.set_num_threads(1)
    torch.manual_seed(0)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    task = make_task(task_kind).to(dev)
    lopt = LSTMOptimizer(recompute_gates=recompute).to(dev)
    st = init_unroll(lopt, task, 0)
    r = truncated_unroll(lopt, st, 1)  # warm-up: allocator, lazy init, scratch buffers
    r.meta_loss.backward()
    row, _ = measure(lopt, r.state, unroll, rss=True)
    print(json.dumps(row))


def linear_fit(xs: list[float], ys: list[float]) -> dict:
    """Least-squares line ``y = intercept + slope * x``: slope, intercept and R²."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    icept = my - slope * mx
    ss_res = sum((y - (icept + slope * x)) ** 2 for x, y in zip(xs, ys))
    ss_tot = sum((y - my) ** 2 for y in ys)
    return {"bytes_per_unrolled_step": slope, "intercept_bytes": icept,
            "r2": 1 - ss_res / ss_tot if ss_tot else 1.0}


def summarize(rows: list[dict], task: str, state_bytes: int) -> dict:
    fits = {}
    for key in MEASURES:
        pts = [(r["unroll"], r[key]) for r in rows if r.get(key) is not None]
        if len(pts) >= 2 and len({x for x, _ in pts}) >= 2:
            fits[key] = linear_fit([x for x, _ in pts], [y for _, y in pts])
    return {"task": task, "params": rows[0].get("params"), "rows": rows, **fits.get("saved_bytes", {}), "fits": fits,
            "lstm_state_bytes_per_param": state_bytes, "adam_state_bytes_per_param": 8}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--unrolls", default="10,20,40")
    ap.add_argument("--task", default="mlp")
    add_out_argument(ap, "memory.json or memory_recompute.json")
    ap.add_argument("--recompute-gates", action="store_true",
                    help="LSTMOptimizer(recompute_gates=True): the memory-saving meta-backward; "
                         "writes memory_recompute.json")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child is not None:
        return child(a.child, a.task, a.recompute_gates)
    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    for k in (int(x) for x in a.unrolls.split(",")):
        cmd = [sys.executable, __file__, "--child", str(k), "--task", a.task] + ["--recompute-gates"] * a.recompute_gates
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout.strip().splitlines()[-1]
        rows.append(json.loads(out))
    from l2l_torch.learned_optimizers import LSTMOptimizer

    summary = {**summarize(rows, a.task, LSTMOptimizer().state_bytes_per_param()),
               "recompute_gates": a.recompute_gates}
    mib = 2**20

    def cell(v):
        return f"{v / mib:.2f}" if v is not None else "n/a"

    print(f"device: {rows[0]['device']}; peak: {rows[0]['peak_method']}")
    print(f"{'unroll':>6} {'saved MiB':>10} {'peak MiB':>9} {'peak RSS MiB':>13}")
    for r in rows:
        print(f"{r['unroll']:>6} {cell(r['saved_bytes']):>10} {cell(r['peak_bytes']):>9} "
              f"{cell(r.get('peak_rss_bytes')):>13}")
    for key, f in summary["fits"].items():
        print(f"linear fit of {key}: {f['bytes_per_unrolled_step'] / mib:.3f} MiB per unrolled step, "
              f"intercept {f['intercept_bytes'] / mib:.2f} MiB, R² = {f['r2']:.5f}")
    if "saved_bytes" in summary["fits"]:
        per = summary["fits"]["saved_bytes"]["bytes_per_unrolled_step"] / rows[0]["params"]
        print(f"saved per unrolled step and optimizee parameter: {per:.1f} B (the LSTM's hidden and cell states "
              f"of one step alone: {summary['lstm_state_bytes_per_param']} B)")
    print(f"optimizer state per parameter: LSTM {summary['lstm_state_bytes_per_param']} B, Adam 8 B")
    write_json(a.out, "memory_recompute.json" if a.recompute_gates else "memory.json", summary)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("rows", "fits")}))


if __name__ == "__main__":
    main()
