#!/usr/bin/env bash
# The one-optimizer brief, stage 2b: the family-trained paper LSTM continued on 200-step trajectories (research/experiments/fmnist_family_lstm_h200/fmnist_family_lstm_h200.yaml),
# evaluated on the rows of research/experiments/fmnist_family_lstm against the same tuned-Adam runs (--reuse-baselines: same
# held-out seeds, the runs are deterministic per seed).
set -euo pipefail
export OMP_NUM_THREADS=1 L2L_DATA_DIR=${L2L_DATA_DIR:-../shared/data}
S=research/experiments/fmnist_family_lstm            # stage 1: its evaluations hold the baselines
R=research/experiments/fmnist_family_lstm_h200
# meta-training: 25 min (max_time)
# /usr/bin/time -v python train.py --task fmnist_family_lstm_h200 --out runs/fmnist_family_lstm_h200
# cp runs/fmnist_family_lstm_h200/optimizer.pt runs/fmnist_family_lstm_h200/optimizer.json $R/
# python -m l2l_torch.plots scalars runs/fmnist_family_lstm_h200/tb --tags val/loss,meta_train/loss,meta_train/grad_norm --out $R/meta_training
# python -m research.tools.compare $R/comparison family_lstm=$S/optimizer.pt family_lstm_h200=$R/optimizer.pt \
#   -- research/experiments/lopt_small_fc_mix/fmnist_t1_{sigmoid,tanh,relu}_{100,200}
for act in sigmoid tanh relu; do
  for steps in 100 200; do
    python evaluate.py --task fmnist_t1 --checkpoint $R/optimizer.pt --set activation=$act --steps $steps --seeds 5 \
      --baselines adam --reuse-baselines $S/fmnist_t1_${act}_${steps} --out $R/fmnist_t1_${act}_${steps}
  done
done
python evaluate.py --task fmnist_t1 --checkpoint $R/optimizer.pt --steps 1000 --seeds 5 --baselines adam \
  --reuse-baselines $S/fmnist_t1_sigmoid_1000 --out $R/fmnist_t1_sigmoid_1000
python evaluate.py --task affnist --checkpoint $R/optimizer.pt --steps 200 --seeds 5 \
  --reuse-baselines research/experiments/affnist/meta_lr_0.01 --out $R/affnist_200
python evaluate.py --task cifar_convdense --checkpoint $R/optimizer.pt --baselines adam --seeds 5 \
  --reuse-baselines $S/cifar_convdense_300 --no-updates --out $R/cifar_convdense_300
python evaluate.py --task cifar_conv --checkpoint $R/optimizer.pt --baselines adam --seeds 5 \
  --reuse-baselines $S/cifar_conv_450 --no-updates --out $R/cifar_conv_450
