#!/usr/bin/env bash
# Install l2l_torch with its test extra into ./.venv, lint it, and run the test suite.
# Usage: bash scripts/test.sh [pytest args...]
# The suite runs in L2L_TEST_WORKERS pytest-xdist processes (default 2; 0 runs it in this process), each with
# OMP_NUM_THREADS threads (default 1): most of its time is Python start-up and small subprocess runs, which
# one process leaves on one core.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
quiet() { "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }  # this machine's pip index warnings
python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# torch/torchvision: the pinned pair that installs on this project's machines (see README, "Install")
if ! python -c "import torch, torchvision" >/dev/null 2>&1; then
  case "$(uname -m)" in
    aarch64|arm64) quiet python -m pip install -q torch==2.9.1 torchvision==0.24.1 ;;
    *) quiet python -m pip install -q torch==2.14.1 torchvision==0.29.1 ;;
  esac
fi
quiet python -m pip install -q -e ".[test]"
# Tests and the library read the datasets from $L2L_DATA_DIR (default: ../shared/data, read-only); a test that
# needs a dataset folder missing there is skipped, and says which folder.
export L2L_DATA_DIR="${L2L_DATA_DIR:-$(cd .. && pwd)/shared/data}"
export L2L_CACHE_DIR="${L2L_CACHE_DIR:-$PWD/.cache/l2l_torch}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
ruff check -q .  # the lint configured in pyproject.toml (under a second)
set +e
python -m pytest -q -n "${L2L_TEST_WORKERS:-2}" "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
