"""Learned optimizers: the interface (:mod:`.base`) and the architectures, one file each."""

from l2l_torch.learned_optimizers.base import REGISTRY, LearnedOptimizerBase, LOptState, register
from l2l_torch.learned_optimizers.lstm import LSTMOptimizer, preprocess_gradients

__all__ = ["REGISTRY", "LearnedOptimizerBase", "LOptState", "register", "LSTMOptimizer", "preprocess_gradients"]
