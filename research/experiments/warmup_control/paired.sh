# Paired verdicts of each row's learned optimizer against Adam with the same 10-step warm-up at its best lr
# (best of the lrs run, picked on these same seeds: an optimistic bound for Adam).
# bash research/experiments/warmup_control/paired.sh > research/experiments/warmup_control/paired.txt
for r in sigmoid_100:0.03 sigmoid_200:0.01 tanh_100:0.01 tanh_200:0.01 relu_100:0.01 relu_200:0.01; do
  python -m research.tools.paired_verdicts research/experiments/warmup_control/fmnist_t1_${r%%:*}.json small_fc --against adam_warmup10_lr${r##*:}
done
python -m research.tools.paired_verdicts research/experiments/warmup_control/cifar_convdense_300_lr0.003.json small_fc --against adam_warmup10_lr0.003
python -m research.tools.paired_verdicts research/experiments/warmup_control/cifar_convdense_300_lr0.003.json small_fc --against adam_warmup10_lr0.003 --key test_accuracy
python -m research.tools.paired_verdicts research/experiments/warmup_control/cifar_conv_450.json small_fc --against adam_warmup10_lr0.01
# the procedure-tuned control (evaluate.py --baselines adam_warmup: lr tuned on 2 separate instances)
python -m research.tools.paired_verdicts research/experiments/warmup_control/cifar_convdense_300_tuned/results.json small_fc --against adam_warmup_tuned
python -m research.tools.paired_verdicts research/experiments/warmup_control/cifar_convdense_300_tuned/results.json small_fc --against adam_warmup_tuned --key test_accuracy
for k in train_loss test8_ssim test6_ssim test1_ssim; do
  python -m research.tools.paired_verdicts research/experiments/warmup_control/affnist_200_tuned/results.json small_fc --against adam_warmup_tuned --key $k
done
