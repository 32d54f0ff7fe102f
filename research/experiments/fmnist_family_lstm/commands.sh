#!/usr/bin/env bash
# The one-optimizer brief: the paper's LSTM meta-trained on a family of Fashion-MNIST MLPs (random activation, width,
# batch size, objective scale), evaluated on fmnist_t1 with each activation against tuned Adam.
set -euo pipefail
export OMP_NUM_THREADS=1 L2L_DATA_DIR=${L2L_DATA_DIR:-../shared/data}
R=research/experiments/fmnist_family_lstm
python train.py --task lstm_fmnist_family --out runs/fmnist_family_lstm   # 22 minutes (max_time)
cp runs/fmnist_family_lstm/optimizer.pt runs/fmnist_family_lstm/optimizer.json $R/
for act in sigmoid tanh relu; do
  for steps in 100 200; do
    python evaluate.py --task fmnist_t1 --checkpoint $R/optimizer.pt --set activation=$act --steps $steps \
      --seeds 5 --baselines adam --out $R/fmnist_t1_${act}_${steps}
  done
done
python evaluate.py --task fmnist_t1 --checkpoint $R/optimizer.pt --steps 1000 --seeds 5 --baselines adam --out $R/fmnist_t1_sigmoid_1000
python research/experiments/lopt_small_fc_mix/summarize.py $R
# the other learned optimizers on the same seeds (paired with the same tuned-Adam runs)
python research/experiments/lopt_small_fc_mix/extra_rows.py $R/comparison small_fc_mixture=research/experiments/lopt_small_fc_mix/optimizer.pt \
  paper_lstm_fmnist_t1_run3=research/experiments/fmnist_t1/optimizer.pt -- $R/fmnist_t1_{sigmoid,tanh,relu}_{100,200}
