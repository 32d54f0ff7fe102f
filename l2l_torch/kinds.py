"""The one rule that says which network of a per-kind learned optimizer steps a parameter.

A learned optimizer with ``per_kind=True`` keeps one network for ``"conv"`` parameters and one for ``"dense"``
ones (the paper's CIFAR-10 experiment; the study's 6.5.2). A parameter's kind is the kind of the last
weight layer (convolution or linear) at or before the module that owns it, in the model's module order: a
convolution's weight and bias are ``"conv"``, and so is the BatchNorm that follows it; a linear layer's
parameters, and anything before the first weight layer, are ``"dense"``. Meta-training (``Task.param_kinds``),
``evaluate.py`` and :func:`l2l_torch.param_groups_by_kind` in a user's own loop all use :func:`param_kinds`.

Example:
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    >>> param_kinds(net)
    {'0.weight': 'conv', '0.bias': 'conv', '1.weight': 'conv', '1.bias': 'conv', '3.weight': 'dense', '3.bias': 'dense'}
"""

from __future__ import annotations

from typing import Any

from torch import nn

KINDS = ("conv", "dense")


def param_kinds(model: nn.Module) -> dict[str, str]:
    """Parameter name (as in ``model.named_parameters()``) -> ``"conv"`` or ``"dense"``."""
    kinds: dict[str, str] = {}
    last = "dense"
    for mod_name, mod in model.named_modules():
        if isinstance(mod, nn.modules.conv._ConvNd):
            last = "conv"
        elif isinstance(mod, nn.Linear):
            last = "dense"
        for p_name, _ in mod.named_parameters(recurse=False):
            kinds[f"{mod_name}.{p_name}" if mod_name else p_name] = last
    return kinds


def param_groups_by_kind(model: nn.Module) -> list[dict[str, Any]]:
    """``model``'s trainable parameters as param groups labelled ``"kind"`` by :func:`param_kinds`, in the
    model's parameter order. Pass them to :class:`~l2l_torch.LearnedOptimizer` for a per-kind optimizer."""
    kinds = param_kinds(model)
    groups: dict[str, list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault(kinds[name], []).append(p)
    return [{"params": ps, "kind": k} for k, ps in groups.items()]
