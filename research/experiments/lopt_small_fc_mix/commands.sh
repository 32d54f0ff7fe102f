#!/usr/bin/env bash
# The one-optimizer brief: small_fc learned optimizer meta-trained on the MLP task mixture, evaluated on fmnist_t1 with
# each activation against learning-rate-tuned Adam (tuned on separate instances, 3 per lr, same steps).
set -euo pipefail
export OMP_NUM_THREADS=1 L2L_DATA_DIR=${L2L_DATA_DIR:-../shared/data}
R=research/experiments/lopt_small_fc_mix

# meta-training: 30 minutes wall clock (max_time in the config) on a shared 2-core machine;
# the checkpoint with the best validation loss on held-out mixture instances is kept
python train.py --task lopt_small_fc_mix --out runs/lopt_small_fc_mix
cp runs/lopt_small_fc_mix/optimizer.pt $R/

# Fashion-MNIST MLP 784-20-10 (batch 512), sigmoid / tanh / relu, at 100 and 200 steps, 5 held-out seeds
for act in sigmoid tanh relu; do
  for steps in 100 200; do
    python evaluate.py --task fmnist_t1 --checkpoint $R/optimizer.pt --set activation=$act --steps $steps \
      --seeds 5 --baselines adam --out $R/fmnist_t1_${act}_${steps}
  done
done
python evaluate.py --task fmnist_t1 --checkpoint $R/optimizer.pt --steps 1000 --seeds 5 --baselines adam --out $R/fmnist_t1_sigmoid_1000
python $R/summarize.py $R
