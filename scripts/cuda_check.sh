#!/usr/bin/env bash
# Checks on a machine with a CUDA GPU (CI has none), in under 8 minutes: the suite's CUDA cases (`pytest -k cuda`:
# the `on_device` tests' CUDA case and the CUDA-only tests, e.g. the population unroll and the LSTM cell on CUDA),
# the deployment, meta-training throughput, kernel-launch and PES-cost benchmarks on the GPU, and a 2-minute
# `train.py --task affnist` on its defaults to time meta-steps there.
#
#   L2L_DATA_DIR=<folder with FashionMNIST/ and MNIST/> bash scripts/cuda_check.sh [OUT_DIR]
#
# OUT_DIR defaults to research/experiments/cuda_check/. It receives log.txt (everything printed, in order, with each
# part's wall time) and the benchmarks' JSON files (deployment.json, meta_throughput.json, launches.json,
# pes_cost.json). Each part
# has its own time limit, so one that hangs does not take the others with it. Python, torch and the packages are the
# machine's own; nothing is installed here.
#
# CUDA_CHECK_DEVICE=cpu runs every part on the CPU with tiny settings (about a minute or two): a dry run of the
# script itself on a machine without a GPU. Its OUT_DIR defaults to a temporary folder, not the committed one.
set -uo pipefail
PY=${PYTHON:-python3}
dev=${CUDA_CHECK_DEVICE:-cuda}
case "$dev" in cuda|cpu) ;; *) echo "CUDA_CHECK_DEVICE must be cuda or cpu, got '$dev'" >&2; exit 2;; esac
if [ "$dev" = cpu ]; then default_out="${TMPDIR:-/tmp}/cuda_check_cpu"; else default_out=research/experiments/cuda_check; fi
out=${1:-$default_out}
mkdir -p "$out"
# the tests and the library read the datasets from $L2L_DATA_DIR (default as in scripts/test.sh: ../shared/data)
export PYTHONUNBUFFERED=1 L2L_DATA_DIR="${L2L_DATA_DIR:-$(cd .. && pwd)/shared/data}"
log="$out/log.txt"
: > "$log"
part() { echo "=== $* ($(date +%T), device $dev)" | tee -a "$log"; }
# run LIMIT_S CMD...: the command under a time limit, its output (less progress bars and compiler chatter) in the log
run() {
  local limit=$1 t0 rc; shift
  t0=$(date +%s)
  timeout "$limit" "$@" 2>&1 | grep -v -e "it/s]$" -e "^W[0-9]" -e "DEBUG" | tail -60 | tee -a "$log"
  rc=${PIPESTATUS[0]}
  echo "--- exit $rc, $(( $(date +%s) - t0 )) s" | tee -a "$log"
}

part env
if [ "$dev" = cuda ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$log"
fi
run 60 "$PY" -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__,
'cuda available', torch.cuda.is_available())"

part "pytest: the suite's CUDA cases"
if [ "$dev" = cuda ]; then
  xdist=$("$PY" -c "import xdist" 2>/dev/null && echo "-n 8")
  run "${SUITE_LIMIT:-150}" "$PY" -m pytest -q -p no:cacheprovider $xdist -k cuda tests
else  # the same selection on two files (its CUDA cases skip here) and the CPU test of the CUDA LSTM cell
  run 120 "$PY" -m pytest -q -p no:cacheprovider -k "cuda or torch_cell" tests/test_lstm.py tests/test_population_unroll.py
fi

part "deployment step, LearnedOptimizer vs Adam"
if [ "$dev" = cuda ]; then
  run 60 "$PY" benchmarks/deployment.py --device cuda --steps 50 --repeats 5 --out "$out"
else
  run 120 "$PY" benchmarks/deployment.py --device cpu --steps 1 --repeats 1 --threads 1 --out "$out"
fi

part "meta-training throughput (8 task instances per meta-step in the batched row)"
if [ "$dev" = cuda ]; then
  run 120 "$PY" benchmarks/meta_throughput.py --device cuda --json --tasks mlp --repeats 3 --truncations 3 \
    --tasks-per-step 8 --out "$out"
else
  run 120 "$PY" benchmarks/meta_throughput.py --device cpu --json --tasks mlp --repeats 1 --truncations 1 \
    --tasks-per-step 2 --no-recompute-row --threads 1 --out "$out"
fi

part "kernel launches per optimizee step and instance, population throughput and memory"
if [ "$dev" = cuda ]; then
  run 120 "$PY" benchmarks/launches.py --device cuda --json --batches 1,8,64 --throughput-batch 8 --repeats 3 \
    --out "$out"
else
  run 120 "$PY" benchmarks/launches.py --device cpu --json --batches 1,2 --unroll 1 --throughput-batch 2 \
    --repeats 1 --truncations 1 --threads 1 --out "$out"
fi

part "PES with 8 pairs against one BPTT truncation (target: at most 3x), and the particles' own work"
if [ "$dev" = cuda ]; then
  run 120 "$PY" benchmarks/pes_cost.py --device cuda --repeats 3 --out "$out"
else
  run 120 "$PY" benchmarks/pes_cost.py --device cpu --pairs 2 --unroll 2 --repeats 1 --threads 1 --out "$out"
fi

part "train.py --task affnist on its defaults for 2 minutes"
if [ "$dev" = cuda ]; then
  run 200 "$PY" train.py --task affnist --out "$out/affnist_run" --trainer.max_time 00:00:02:00
else  # one meta-step of 2 optimizee steps and one short validation, on a few generated digits
  run 200 "$PY" train.py --task affnist --out "$out/affnist_run" --trainer.accelerator cpu --trainer.max_steps 1 \
    --model.truncation.unroll 2 --model.val_every 1 --model.val_tasks 1 --model.val_horizon 2 \
    --data.n_train 64 --data.n_val 8 --data.n_test 8
fi
rm -rf "$out/affnist_run"   # checkpoints and TensorBoard files: not needed back
part done
