#!/usr/bin/env bash
# The headline table on fresh held-out instances (2,100,000 ... 2,100,009), run once with the methods frozen.
#   bash research/experiments/headline_fresh/run.sh TASK [TASK ...]      (tasks: see LEARNED below)
# Per task, the recommended optimizer's evaluation trains lr-tuned Adam and adamw_tuned (tuned on the tuning
# instances only); every other learned optimizer of that task reuses those baselines after reproducing one run.
# The CIFAR-10 CNNs are slow on a CPU, so they get 5 seeds and a 40-trial adamw_tuned search (even so their first
# evaluations took 67 and 77 minutes: "seconds" in results.json); the others 10 seeds and the default 100 trials.
set -euo pipefail
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=1   # the reuse check reproduces a run bit for bit only at the same thread count
FIRST=2100000
OUT=research/experiments/headline_fresh
declare -A BUDGET=([cifar_convdense]="--seeds 5 --tune-trials 40" [cifar_conv]="--seeds 5 --tune-trials 40")
declare -A LEARNED=(
  [fmnist_t1]="fmnist_t1 hyper_adam_fmnist_t1"
  [fmnist_t3]="fmnist_t3"
  [cifar_convdense]="lstm_fmnist_family"
  [cifar_conv]="lstm_fmnist_family"
  [affnist]="affnist_paper_lstm"
)
for task in "$@"; do
  [[ -n "${LEARNED[$task]:-}" ]] || { echo "unknown task $task; one of: ${!LEARNED[*]}" >&2; exit 2; }
  python evaluate.py --task "$task" --checkpoint l2l_torch/pretrained/small_fc_warmup_pes.pt \
      --baselines adam,adamw_tuned ${BUDGET[$task]:---seeds 10} --test-seeds-from $FIRST --no-updates \
      --out "$OUT/$task/small_fc_warmup_pes"
  for name in ${LEARNED[$task]}; do
    python evaluate.py --task "$task" --checkpoint "l2l_torch/pretrained/$name.pt" \
        --baselines adam,adamw_tuned ${BUDGET[$task]:---seeds 10} --test-seeds-from $FIRST --no-updates \
        --reuse-baselines "$OUT/$task/small_fc_warmup_pes" --out "$OUT/$task/$name"
  done
done
