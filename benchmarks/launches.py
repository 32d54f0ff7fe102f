"""Kernels dispatched per optimizee step and task instance: the plain reference against the population path.

    python benchmarks/launches.py [--json] [--batches 1,8,64] [--unroll 2] [--device cpu] [--out DIR]

On a GPU at these sizes a meta-training step is bound by kernel launches, not arithmetic, so this counts what is
launched. ``torch.profiler`` (CPU activity) records every ATen operator that one truncation of ``--unroll`` steps
and its meta-backward dispatch; a *kernel* is a leaf ATen operator (no ATen operator under it) that computes or
copies data, i.e. not a view, an allocation or metadata (``as_strided``, ``view``, ``empty``, ``detach``, ...), plus
one per call of a ``torch.compile``d graph. Both counts (``kernels``, and ``aten_ops``: every ATen event, nested
ones included) are divided by ``unroll x B``: per optimizee step and task instance. With ``--device cuda`` the
CUDA kernels the profiler saw are counted too (``cuda_kernels``).

The paths, on the standard configuration of ``benchmarks/meta_throughput.py`` (Fashion-MNIST MLP 784-20-10 sigmoid,
batch 128, two-layer LSTM with 20 hidden units, log/sign preprocessing):

* ``reference``: the plain ``nn.LSTMCell`` learned optimizer on one instance (``meta_throughput.py``'s reference);
* ``one_by_one``: the current default on CPUs, :func:`~l2l_torch.unroll.truncated_unroll` per instance, B = 1;
* ``population`` at each B of ``--batches``: :func:`~l2l_torch.population_unroll.population_unroll` (vectorised
  optimizee forward and backward, one learned-optimizer call for all B instances; the default on CUDA).

It also times optimizee steps per second and task instance (``--throughput-batch`` B instances, population against
one by one, alternated; the reference at B = 1 beside them) and measures the peak memory per task instance of a
truncation and its meta-backward at the largest B (the allocator's peak as in ``benchmarks/memory.py``). The last
line with ``--json`` is one JSON object: ``launch_ratio_b64`` (population kernels per step and instance at B = 64
over the reference's at B = 1; the targets are <= 0.1, and at B = 1 no more than the reference) and the other
figures. ``--out DIR`` writes ``DIR/launches.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import add_out_argument, write_json  # noqa: E402
from benchmarks import meta_throughput as mt  # noqa: E402
from l2l_torch.learned_optimizers import LSTMOptimizer  # noqa: E402
from l2l_torch.population_unroll import population_unroll  # noqa: E402
from l2l_torch.unroll import init_unroll, truncated_unroll  # noqa: E402

#: leaf ATen operators that launch no computation: views, allocations, metadata
NOT_KERNELS = {"aten::as_strided", "aten::view", "aten::_unsafe_view", "aten::_reshape_alias", "aten::resolve_conj",
               "aten::resolve_neg", "aten::detach", "aten::alias", "aten::lift_fresh", "aten::empty",
               "aten::empty_strided", "aten::set_", "aten::_local_scalar_dense", "aten::is_nonzero"}


def count(fn, device: torch.device) -> dict[str, int]:
    """Run ``fn`` once under ``torch.profiler`` and count its ATen operators, kernels and (CUDA) device kernels."""
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    aten = kernels = compiled = cuda = 0
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            cuda += 1
            continue
        if e.name.startswith("## Call CompiledFxGraph"):
            compiled += 1
        if not e.name.startswith("aten::"):
            continue
        aten += 1
        if e.name not in NOT_KERNELS and not any(k.name.startswith("aten::") for k in e.cpu_children):
            kernels += 1
    out = {"aten_ops": aten, "kernels": kernels + compiled}
    if device.type == "cuda":
        out["cuda_kernels"] = cuda
    return out


def _per_step(counts: dict[str, int], steps: int) -> dict[str, float]:
    return {k: v / steps for k, v in counts.items()}


class Setup:
    """The task instances, the learned optimizer and the plain reference that share its weights."""

    def __init__(self, device: torch.device, max_batch: int) -> None:
        mt.DEVICE = device
        self.device = device
        self.tasks = [mt.make_task("mlp", seed=b) for b in range(max_batch)]
        torch.manual_seed(0)
        self.lopt = LSTMOptimizer().to(device)
        self.plain = mt.PlainLSTMOptimizer(self.lopt)
        self.n = sum(p.numel() for p in self.tasks[0].init_params(0)[0].values())

    def states(self, nb: int, seed: int = 100):
        return [init_unroll(self.lopt, t, seed + b) for b, t in enumerate(self.tasks[:nb])]

    def reference(self, unroll: int):
        """A closure running one reference truncation and its meta-backward (fresh instance per call)."""
        p0, _ = self.tasks[0].init_params(100)
        hidden = [(torch.zeros(self.n, 20, device=self.device), torch.zeros(self.n, 20, device=self.device))
                  for _ in range(2)]
        gen = torch.Generator(device=self.device).manual_seed(100)

        def run() -> None:
            self.lopt.zero_grad()
            loss, _, _ = mt.reference_truncation(self.plain, self.tasks[0], p0, hidden, gen, unroll)
            loss.backward()
        return run

    def ours(self, nb: int, unroll: int, population: bool):
        states = self.states(nb)

        def run() -> None:
            nonlocal states
            self.lopt.zero_grad()
            if population:
                rs = population_unroll(self.lopt, states, unroll)
            else:
                rs = [truncated_unroll(self.lopt, s, unroll) for s in states]
            torch.stack([r.meta_loss for r in rs]).mean().backward()
            states = [r.state for r in rs]
        return run


def launches(setup: Setup, batches: list[int], unroll: int) -> dict:
    """Counts per optimizee step and task instance of each path (each warmed up by one call first)."""
    rows = {}
    ref = setup.reference(unroll)
    ref()
    rows["reference_b1"] = _per_step(count(ref, setup.device), unroll)
    one = setup.ours(1, unroll, population=False)
    one()
    rows["one_by_one_b1"] = _per_step(count(one, setup.device), unroll)
    for nb in batches:
        run = setup.ours(nb, unroll, population=True)
        run()
        rows[f"population_b{nb}"] = _per_step(count(run, setup.device), unroll * nb)
    return rows


def throughput(setup: Setup, nb: int, unroll: int, truncations: int, repeats: int) -> dict:
    """Optimizee steps per second and task instance: population and one by one at ``nb`` instances and the
    reference at one, alternated, medians of ``repeats``."""
    def timed(run, steps: int) -> float:
        run()  # warm-up
        t0 = mt.clock(setup.device)
        for _ in range(truncations):
            run()
        return steps * truncations / (mt.clock(setup.device) - t0)

    runs: dict[str, list[float]] = {"reference_b1": [], "one_by_one": [], "population": []}
    for _ in range(repeats):
        runs["reference_b1"].append(timed(setup.reference(unroll), unroll))
        runs["one_by_one"].append(timed(setup.ours(nb, unroll, population=False), unroll * nb))
        runs["population"].append(timed(setup.ours(nb, unroll, population=True), unroll * nb))
    med = {k: statistics.median(v) for k, v in runs.items()}
    return {"batch": nb, "steps_per_s_per_instance": med, "runs": runs,
            "population_vs_one_by_one": med["population"] / med["one_by_one"]}


def peak_memory(setup: Setup, nb: int, unroll: int) -> dict:
    """Peak allocator bytes of one population truncation of ``nb`` instances and its meta-backward, above what was
    allocated before it, per task instance; beside it the same for one instance by :func:`truncated_unroll`."""
    row = _peak(setup, setup.ours(nb, unroll, population=True))
    one = _peak(setup, setup.ours(1, unroll, population=False))
    return {"batch": nb, "unroll": unroll, "peak_bytes": row[0], "peak_bytes_per_instance": row[0] / nb,
            "peak_mib_per_instance": row[0] / nb / 2**20, "one_by_one_peak_mib": one[0] / 2**20, "method": row[1]}


def _peak(setup: Setup, run) -> tuple[int, str]:
    run()
    if setup.device.type == "cuda":
        torch.cuda.synchronize(setup.device)
        torch.cuda.reset_peak_memory_stats(setup.device)
        base = torch.cuda.memory_allocated(setup.device)
        run()
        torch.cuda.synchronize(setup.device)
        peak, method = torch.cuda.max_memory_allocated(setup.device) - base, "torch.cuda.max_memory_allocated"
    else:
        from benchmarks.memory import _cpu_alloc_peak

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            run()
        peak, method = _cpu_alloc_peak(prof), "torch.profiler profile_memory"
    return peak, method


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="end with one JSON line")
    ap.add_argument("--batches", default="1,8,64", help="population sizes B to count (comma-separated)")
    ap.add_argument("--unroll", type=int, default=2, help="optimizee steps per counted truncation")
    ap.add_argument("--throughput-batch", type=int, default=8, help="B of the throughput rows (0 skips them)")
    ap.add_argument("--truncations", type=int, default=10,
                    help="truncations per timed run (2 x 3 repeats was too short to time on a CPU)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True,
                    help="measure the peak memory per instance at the largest B (default: on)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 2)))
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    add_out_argument(ap, "launches.json")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    batches = [int(b) for b in a.batches.split(",") if b]
    setup = Setup(device, max(batches + [a.throughput_batch, 1]))
    rows = launches(setup, batches, a.unroll)
    ref = rows["reference_b1"]["kernels"]
    print(f"kernels per optimizee step and task instance (unroll {a.unroll}, {device.type}, {a.threads} threads)")
    print(f"{'path':16} {'kernels':>9} {'vs ref':>7} {'aten ops':>9}" + (f" {'CUDA kernels':>13}" if device.type ==
                                                                      "cuda" else ""))
    for name, r in rows.items():
        print(f"{name:16} {r['kernels']:>9.2f} {r['kernels'] / ref:>6.3f}x {r['aten_ops']:>9.2f}"
              + (f" {r['cuda_kernels']:>13.2f}" if "cuda_kernels" in r else ""))
    summary: dict = {"device": device.type, "threads": a.threads, "unroll": a.unroll, "params": setup.n,
                     "reference_kernels_per_step": ref,
                     **{f"launch_ratio_b{b}": rows[f"population_b{b}"]["kernels"] / ref for b in batches},
                     "one_by_one_ratio_b1": rows["one_by_one_b1"]["kernels"] / ref}
    if "cuda_kernels" in rows["reference_b1"]:
        summary.update({f"cuda_kernel_ratio_b{b}": rows[f"population_b{b}"]["cuda_kernels"]
                        / rows["reference_b1"]["cuda_kernels"] for b in batches})
    result = {**summary, "rows": rows}
    if a.throughput_batch > 0:
        tp = throughput(setup, a.throughput_batch, a.unroll, a.truncations, a.repeats)
        result["throughput"] = tp
        summary["population_vs_one_by_one_throughput"] = tp["population_vs_one_by_one"]
        summary["throughput_batch"] = tp["batch"]
        print(f"optimizee steps/s per task instance at B = {tp['batch']}: " + ", ".join(
            f"{k} {v:.2f}" for k, v in tp["steps_per_s_per_instance"].items())
            + f" (population / one by one: {tp['population_vs_one_by_one']:.2f}x)")
    if a.memory:
        mem = peak_memory(setup, max(batches), a.unroll)
        result["memory"] = mem
        summary["peak_mib_per_instance"] = mem["peak_mib_per_instance"]
        summary["memory_batch"] = mem["batch"]
        print(f"peak memory per task instance at B = {mem['batch']} (unroll {a.unroll}, truncation and "
              f"meta-backward): {mem['peak_mib_per_instance']:.2f} MiB; one instance by truncated_unroll: "
              f"{mem['one_by_one_peak_mib']:.2f} MiB ({mem['method']})")
        summary["one_by_one_peak_mib"] = mem["one_by_one_peak_mib"]
    write_json(a.out, "launches.json", result)
    if a.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
