"""Learned optimizers: the interface (:mod:`.base`) and the architectures, one file each; those that read named
per-coordinate features (:mod:`.features`) share :mod:`.feature_base`."""

from l2l_torch.learned_optimizers.base import REGISTRY, LearnedOptimizerBase, LOptState, register
from l2l_torch.learned_optimizers.hyper_adam import HyperAdamOptimizer
from l2l_torch.learned_optimizers.lstm import LSTMOptimizer, preprocess_gradients
from l2l_torch.learned_optimizers.rnnprop import RNNpropOptimizer
from l2l_torch.learned_optimizers.small_fc import SmallFCOptimizer

__all__ = ["REGISTRY", "LearnedOptimizerBase", "LOptState", "register", "LSTMOptimizer", "preprocess_gradients",
           "SmallFCOptimizer", "RNNpropOptimizer", "HyperAdamOptimizer"]
