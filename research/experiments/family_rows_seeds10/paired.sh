#!/usr/bin/env bash
# Paired verdicts of every family-rows row of research/experiments/family_rows_seeds10 against tuned Adam: all 10 held-out seeds, then the
# 5 seeds (5-9) that no earlier evaluation used. Usage: bash research/experiments/family_rows_seeds10/paired.sh > research/experiments/family_rows_seeds10/paired.txt
set -euo pipefail
D=research/experiments/family_rows_seeds10
rows=($D/fmnist_t1_{sigmoid,tanh,relu}_{100,200}/results.json $D/fmnist_t1_sigmoid_2000/results.json $D/cifar_convdense_300/results.json)
for seeds in 0: 5:; do
  python -m research.tools.paired_verdicts "${rows[@]}" --seeds $seeds
  for k in test8_ssim test6_ssim test1_ssim; do
    python -m research.tools.paired_verdicts $D/affnist_200/results.json --key $k --seeds $seeds
  done
  echo
done
