#!/usr/bin/env bash
# Evaluate one learned optimizer on every row that the one-optimizer brief judges a family optimizer by, against the very
# same tuned-Adam runs and held-out seeds as the earlier family optimizers (no baseline is re-tuned):
#   Fashion-MNIST MLPs sigmoid/tanh/ReLU at 100 and 200 steps (paired table: OUT/comparison.md),
#   sigmoid at 1,000 steps, CIFAR-10 conv+dense at 300 steps, the affNIST STN at 200 steps, and fmnist_t1
#   (study Table 1 setting, 10 seeds).
# Usage: L2L_DATA_DIR=../shared/data OMP_NUM_THREADS=1 bash research/tools/eval_family_rows.sh CHECKPOINT OUT [NAME]
set -euo pipefail
cd "$(dirname "$0")/.."
ckpt=$1 out=$2 name=${3:-learned}
py=${PYTHON:-python}
mkdir -p "$out"
$py -m research.tools.compare "$out/comparison" "$name=$ckpt" -- research/experiments/lopt_small_fc_mix/fmnist_t1_{sigmoid,tanh,relu}_{100,200}
$py evaluate.py --task fmnist_t1 --checkpoint "$ckpt" --seeds 10 --reuse-baselines research/experiments/fmnist_t1 --out "$out/fmnist_t1_100"
$py evaluate.py --task affnist --checkpoint "$ckpt" --steps 200 --seeds 5 --reuse-baselines research/experiments/affnist/meta_lr_0.01 \
    --out "$out/affnist_200"
$py evaluate.py --task fmnist_t1 --checkpoint "$ckpt" --steps 1000 --seeds 5 --baselines adam \
    --reuse-baselines research/experiments/lopt_small_fc_mix/fmnist_t1_sigmoid_1000 --out "$out/fmnist_t1_sigmoid_1000"
$py evaluate.py --task cifar_convdense --checkpoint "$ckpt" --baselines adam --seeds 5 --no-updates \
    --reuse-baselines research/experiments/fmnist_family_lstm/cifar_convdense_300 --out "$out/cifar_convdense_300"
