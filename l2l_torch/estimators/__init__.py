"""Meta-gradient estimators, one per file: :class:`TruncatedBPTT` (the paper's) and :class:`PES`."""

from l2l_torch.estimators.base import Estimate, GradientEstimator, set_flat_grad
from l2l_torch.estimators.pes import PES, PESResult, antithetic_pair, pes_estimate
from l2l_torch.estimators.truncated_bptt import TruncatedBPTT

__all__ = ["GradientEstimator", "Estimate", "TruncatedBPTT", "PES", "PESResult", "antithetic_pair", "pes_estimate",
           "set_flat_grad"]
