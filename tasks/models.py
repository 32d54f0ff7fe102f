"""Optimizee networks of the vision tasks: the study's MLP, conv-only CNN and conv+dense CNN, and a configurable CNN
(:func:`cnn`: depth, widths, BatchNorm, pooling and activation chosen per instance by the task families)."""

from __future__ import annotations

from torch import nn

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU,
               "elu": nn.ELU}
MODELS = ("mlp", "conv", "convdense", "cnn")
POOLINGS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


def mlp(in_shape: tuple[int, int, int], hidden: list[int], activation: str = "sigmoid",
        num_classes: int = 10) -> nn.Sequential:
    """Flatten, then ``Linear -> activation`` per hidden width, then a linear output layer.

    Input ``(B, C, H, W)``, output logits ``(B, num_classes)``. ``hidden=[20]`` is the study's
    Experiment 3 network (one hidden layer of 20), ``[20, 20]`` its Experiment 3.1.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    c, h, w = in_shape
    layers: list[nn.Module] = [nn.Flatten()]
    width = c * h * w
    for n in hidden:
        layers += [nn.Linear(width, n), ACTIVATIONS[activation]()]
        width = n
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def _conv_block(cin: int, cout: int) -> list[nn.Module]:
    # BatchNorm before ReLU: the study found conv training with the LSTM unstable without it
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]


def conv_only(in_shape: tuple[int, int, int], num_classes: int = 10) -> nn.Sequential:
    """The study's 6.5.1 CNN: conv 16 and 32 (3x3, BatchNorm, ReLU, 2x2 max pooling), a 3x3 conv
    to ``num_classes`` channels and global average pooling.

    Input ``(B, C, H, W)``, output logits ``(B, num_classes)``.
    """
    c = in_shape[0]
    return nn.Sequential(*_conv_block(c, 16), *_conv_block(16, 32),
                         nn.Conv2d(32, num_classes, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def conv_dense(in_shape: tuple[int, int, int], num_classes: int = 10, dense: int = 20) -> nn.Sequential:
    """The study's 6.5.2 CNN: conv 16, 32, 64 (3x3, BatchNorm, ReLU, 2x2 max pooling), a dense
    layer of ``dense`` ReLU units and the linear output layer.

    Input ``(B, C, H, W)`` with ``H``, ``W`` divisible by 8, output logits ``(B, num_classes)``.
    """
    c, h, w = in_shape
    return nn.Sequential(*_conv_block(c, 16), *_conv_block(16, 32), *_conv_block(32, 64), nn.Flatten(),
                         nn.Linear(64 * (h // 8) * (w // 8), dense), nn.ReLU(), nn.Linear(dense, num_classes))


def cnn(in_shape: tuple[int, int, int], channels: list[int], batchnorm: bool = True, pooling: str = "max",
        activation: str = "relu", num_classes: int = 10, hidden: list[int] | None = None) -> nn.Sequential:
    """A CNN of ``len(channels)`` blocks ``Conv2d(3x3, padding 1) -> [BatchNorm2d] -> activation -> 2x2 pooling``,
    then flatten, a ``Linear -> activation`` layer per width in ``hidden`` (none by default) and the linear
    output layer.

    Input ``(B, C, H, W)``; each block halves ``H`` and ``W`` (floor), so ``len(channels)`` must leave them >= 1;
    output logits ``(B, num_classes)``.

    Example:
        >>> import torch
        >>> net = cnn((1, 28, 28), [8, 16], batchnorm=False, pooling="avg")
        >>> net(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {sorted(POOLINGS)}, got {pooling!r}")
    c, h, w = in_shape
    if not channels or min(channels) < 1 or min(h, w) >> len(channels) < 1:
        raise ValueError(f"channels must be 1 to {min(h, w).bit_length() - 1} positive widths for "
                         f"{h}x{w} inputs, got {channels}")
    layers: list[nn.Module] = []
    for n in channels:
        layers += [nn.Conv2d(c, n, 3, padding=1), *([nn.BatchNorm2d(n)] if batchnorm else []),
                   ACTIVATIONS[activation](), POOLINGS[pooling](2)]
        c, h, w = n, h // 2, w // 2
    layers.append(nn.Flatten())
    width = c * h * w
    for n in hidden or []:
        layers += [nn.Linear(width, n), ACTIVATIONS[activation]()]
        width = n
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def build_model(model: str, in_shape: tuple[int, int, int], num_classes: int = 10, hidden: list[int] | None = None,
                activation: str = "sigmoid", channels: list[int] | None = None, batchnorm: bool = True,
                pooling: str = "max") -> nn.Sequential:
    """``model`` is ``"mlp"`` (uses ``hidden`` and ``activation``), ``"conv"`` or ``"convdense"``
    (uses ``hidden[0]`` as the dense width when given), or ``"cnn"`` (:func:`cnn`: uses ``channels`` (default
    ``[16, 32]``), ``batchnorm``, ``pooling``, ``activation`` and ``hidden``, the dense widths, default none)."""
    if model == "mlp":
        return mlp(in_shape, list(hidden if hidden is not None else [20]), activation, num_classes)
    if model == "cnn":
        return cnn(in_shape, list(channels or [16, 32]), batchnorm, pooling, activation, num_classes, hidden)
    if model == "conv":
        return conv_only(in_shape, num_classes)
    if model == "convdense":
        return conv_dense(in_shape, num_classes, hidden[0] if hidden else 20)
    raise ValueError(f"model must be one of {MODELS}, got {model!r}")
