"""l2l_torch: learned optimizers for computer vision on PyTorch Lightning.

Public entry points:
    * :class:`LearnedOptimizer`: a trained optimizer as a ``torch.optim.Optimizer``.
    * :func:`load_learned_optimizer` / :func:`save_learned_optimizer`: the checkpoint format;
      :func:`read_learned_optimizer` also reads a Lightning checkpoint of meta-training.
    * :class:`HypergradientLR`: adapts an optimizer's ``lr`` online (hypergradient descent).
    * :class:`LSTMOptimizer`: the paper's coordinatewise LSTM.
    * :func:`list_pretrained` / :func:`pretrained_path`: learned optimizers shipped with the package.
"""

import l2l_torch._checkout  # noqa: F401  (first: maps l2l_torch.tasks/.configs in a source checkout)
from l2l_torch.checkpoint import (
    CheckpointError,
    load_learned_optimizer,
    read_learned_optimizer,
    save_learned_optimizer,
)
from l2l_torch.hypergradient import HypergradientLR
from l2l_torch.kinds import param_groups_by_kind, param_kinds
from l2l_torch.learned_optimizers import REGISTRY, LearnedOptimizerBase, LSTMOptimizer
from l2l_torch.optim import LearnedOptimizer
from l2l_torch.pretrained import list_pretrained, pretrained_path

__version__ = "0.1.0"
__all__ = ["LearnedOptimizer", "HypergradientLR", "LSTMOptimizer", "LearnedOptimizerBase", "REGISTRY", "CheckpointError",
           "load_learned_optimizer", "read_learned_optimizer", "save_learned_optimizer", "param_groups_by_kind", "list_pretrained",
           "pretrained_path", "param_kinds"]
