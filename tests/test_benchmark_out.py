"""benchmarks/: the scripts that write files write them only into the folder named by ``--out``."""

import json
import subprocess
import sys
import types

import torch

from tests.helpers import REPO

#: where committed benchmark outputs live (now or later); no run here may touch them
COMMITTED = [REPO / "results" / "benchmarks", REPO / "benchmarks" / "results"]


def _committed_files() -> dict:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for d in COMMITTED if d.is_dir() for p in d.rglob("*")}


def test_deployment_writes_nothing_without_out_and_its_json_with_it(tmp_path):
    before = _committed_files()
    cmd = [sys.executable, str(REPO / "benchmarks" / "deployment.py"), "--steps", "1", "--repeats", "1", "--threads", "1"]
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert not any(tmp_path.iterdir()) and "not written: --out DIR writes deployment.json" in r.stderr
    r = subprocess.run([*cmd, "--out", "o"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["deployment.json"]
    saved = json.loads((tmp_path / "o" / "deployment.json").read_text())
    assert [row["task"] for row in saved["rows"]] == ["convdense", "mlp"]
    assert _committed_files() == before


def test_deployment_times_the_hypergradient_adaptation_beside_the_learned_optimizer(tmp_path):
    cmd = [sys.executable, str(REPO / "benchmarks" / "deployment.py"), "--steps", "1", "--repeats", "1", "--threads",
           "1", "--heldout", "mnist_mlp_128x64_silu_b1024", "--pretrained", "small_fc_warmup_pes", "--out", "o"]
    r = subprocess.run([*cmd, "--hypergradient", "1"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    row = json.loads((tmp_path / "o" / "deployment.json").read_text())["rows"][2]
    assert row["hypergradient_beta"] == 1.0 and row["hypergradient_ratio"] > 0 and len(row["hypergradient_runs_ms"]) == 1
    assert json.loads(r.stdout.splitlines()[-1])["heldout_hypergradient_ratio"] == row["hypergradient_ratio"]
    r = subprocess.run([*cmd[:-6], "--hypergradient", "1"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "--hypergradient needs --heldout" in r.stderr


def _fake_throughput_row(kind, repeats, truncations, tasks_per_step=1, recompute_gates=False):
    return {"task": kind, "params": 10, "tasks_per_step": tasks_per_step, "recompute_gates": recompute_gates,
            "same_meta_loss": True, "ours_steps_per_s": 2.0, "reference_steps_per_s": 1.0, "speedup": 2.0,
            "lstm_gemm_only_steps_per_s": 4.0, "speedup_ceiling": 4.0}


def test_meta_throughput_writes_its_json_only_into_out(tmp_path, monkeypatch, capsys):
    import benchmarks.meta_throughput as mt

    monkeypatch.setattr(mt, "bench", _fake_throughput_row)  # the timing itself is not under test here
    monkeypatch.chdir(tmp_path)
    before = _committed_files()
    args = ["--tasks", "mlp", "--threads", str(torch.get_num_threads()), "--json"]
    mt.main(args)
    assert not any(tmp_path.iterdir())
    out, err = capsys.readouterr()
    assert json.loads(out.strip().splitlines()[-1])["batched_tasks_per_step"] == 4
    assert "not written: --out DIR writes meta_throughput.json" in err
    mt.main([*args, "--out", str(tmp_path / "o")])
    saved = json.loads((tmp_path / "o" / "meta_throughput.json").read_text())
    assert [(row["tasks_per_step"], row["recompute_gates"]) for row in saved["rows"]] == [(1, False), (4, False), (1, True)]
    assert _committed_files() == before


def test_memory_writes_its_json_only_into_out(tmp_path, monkeypatch, capsys):
    import benchmarks.memory as mem

    def fake_run(cmd, **kw):  # a child's one JSON row, without running it
        k = int(cmd[cmd.index("--child") + 1])
        row = {"unroll": k, "device": "cpu", "params": 10, "saved_bytes": 100 * k + 50, "peak_bytes": 200 * k,
               "peak_rss_bytes": None, "peak_method": "fake"}
        return types.SimpleNamespace(stdout=json.dumps(row) + "\n")

    monkeypatch.setattr(mem, "subprocess", types.SimpleNamespace(run=fake_run))
    monkeypatch.chdir(tmp_path)
    before = _committed_files()
    mem.main(["--unrolls", "1,2"])
    assert not any(tmp_path.iterdir())
    assert "not written: --out DIR writes memory.json" in capsys.readouterr().err
    mem.main(["--unrolls", "1,2", "--out", str(tmp_path / "o")])
    mem.main(["--unrolls", "1,2", "--recompute-gates", "--out", str(tmp_path / "o")])
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["memory.json", "memory_recompute.json"]
    saved = json.loads((tmp_path / "o" / "memory.json").read_text())
    assert [row["unroll"] for row in saved["rows"]] == [1, 2] and abs(saved["bytes_per_unrolled_step"] - 100) < 1e-9
    assert _committed_files() == before
