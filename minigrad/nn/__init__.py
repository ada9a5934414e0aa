"""Layers (Modules) and initialisation, named as in ``torch.nn``."""

from minigrad.nn import init
from minigrad.nn.layers import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Identity,
    Linear,
    MaxPool2d,
    ModuleList,
    ReLU,
    Sequential,
)
from minigrad.nn.module import Module, Parameter

__all__ = [
    "AdaptiveAvgPool2d", "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Conv2d", "Dropout", "Flatten", "Identity",
    "Linear", "MaxPool2d", "Module", "ModuleList", "Parameter", "ReLU", "Sequential", "init",
]
