#!/usr/bin/env bash
# Checks on a machine with a CUDA GPU (CI has none): the test suite, whose `on_device` tests run their CUDA case
# there and whose train/evaluate smoke tests then run on the GPU (Lightning's and evaluate.py's device choice),
# the three benchmarks on the GPU, and a short `train.py --task affnist` on its defaults to time meta-steps there.
#
#   L2L_DATA_DIR=<folder with FashionMNIST/ and MNIST/> bash scripts/cuda_check.sh OUT_DIR
#
# Writes OUT_DIR/log.txt (everything printed, in order) and the benchmarks' JSON files. Each part has its own
# time limit, so one that hangs does not take the others with it. Python, torch and the packages are the
# machine's own; nothing is installed here.
set -uo pipefail
PY=${PYTHON:-python3}
out=${1:?usage: bash scripts/cuda_check.sh OUT_DIR}
mkdir -p "$out"
# the tests and the library read the datasets from $L2L_DATA_DIR (default as in scripts/test.sh: ../shared/data)
export PYTHONUNBUFFERED=1 L2L_DATA_DIR="${L2L_DATA_DIR:-$(cd .. && pwd)/shared/data}"
log="$out/log.txt"
part() { echo "=== $* ($(date +%T))" | tee -a "$log"; }

part env
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" -c "import torch, lightning, kornia; print('torch', torch.__version__, 'lightning', lightning.__version__,
'kornia', kornia.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name())"; } 2>&1 | tee -a "$log"

part "pytest (the suite; CUDA cases of on_device tests included)"
xdist=$("$PY" -c "import xdist" 2>/dev/null && echo "-n 8")
timeout "${SUITE_LIMIT:-260}" "$PY" -m pytest -q -p no:cacheprovider $xdist 2>&1 | tail -80 | tee -a "$log"

part "deployment step, LearnedOptimizer vs Adam, on the GPU"
timeout 90 "$PY" benchmarks/deployment.py --device cuda --steps 50 --repeats 5 --out "$out" 2>&1 | tee -a "$log"

part "meta-training throughput on the GPU"
timeout 150 "$PY" benchmarks/meta_throughput.py --device cuda --json --tasks mlp --repeats 3 --truncations 3 \
  --tasks-per-step 4 --out "$out" 2>&1 | grep -v "^W[0-9]" | tee -a "$log"

part "meta-training memory on the GPU (benchmarks/memory.py picks CUDA when present)"
timeout 90 "$PY" benchmarks/memory.py --out "$out" 2>&1 | tee -a "$log"

part "train.py --task affnist on its defaults, stopped after ${AFFNIST_STEPS:-60} meta-steps"
t0=$(date +%s)
timeout 150 "$PY" train.py --task affnist --out "$out/affnist_run" --trainer.max_steps "${AFFNIST_STEPS:-60}" \
  --model.val_every 30 2>&1 | grep -v "it/s]$" | tail -25 | tee -a "$log"
echo "train.py wall time: $(( $(date +%s) - t0 )) s" | tee -a "$log"
rm -rf "$out/affnist_run"   # checkpoints and TensorBoard files: not needed back
part done
