"""Tests of minigrad/models/, and what several of them share: the float32 tolerance's size of a network."""

from __future__ import annotations

from minigrad import nn

#: weighted layers on GoogLeNet's longest path: conv1-3 of the stem, two convs in each of the nine Inception
#: blocks, the classifier. Each adds its float32 rounding once (minigrad/testing/tolerance.py).
DEPTH = 3 + 2 * 9 + 1


def longest_sum(model) -> int:
    """The most terms any one output value of the network adds: max over layers of C_in * kH * kW (conv) and
    in_features (linear); the float32 tolerance's ``terms``."""
    sizes = [module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
             for module in model.modules() if isinstance(module, nn.Conv2d)]
    return max(sizes + [module.in_features for module in model.modules() if isinstance(module, nn.Linear)])
