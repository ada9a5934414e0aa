"""The building blocks of Inception v1 (GoogLeNet): BasicConv2d, the Inception block and the auxiliary head.

An Inception block (Szegedy et al. 2014, section 4, Figure 2b) runs four branches side by side on the same
input and concatenates their outputs along the channel axis::

    branch1: 1x1 conv
    branch2: 1x1 conv ("3x3 reduce") -> 3x3 conv
    branch3: 1x1 conv ("5x5 reduce") -> 5x5 conv
    branch4: 3x3 max pool (stride 1) -> 1x1 conv ("pool proj")

The 1x1 "reduce" convolutions are the paper's key idea: they shrink the channels *before* the
expensive 3x3 and 5x5 convolutions. In block 3a a 5x5 conv straight from 192 to 32 channels would
cost 192*32*25 = 153,600 multiply-adds per pixel; reducing to 16 channels first costs
192*16 + 16*32*25 = 15,872, ten times less. The pool branch needs its projection too, or the
concatenated output could only grow from block to block.

The network itself (Table 1, the stem, the variants) is in :mod:`minigrad.models.inception`; a faster,
equal way to run a block's three 1x1 convolutions is :func:`minigrad.models.fuse_inception_1x1`.
"""

from __future__ import annotations

from collections.abc import Callable

import minigrad.functional as F
from minigrad import nn
from minigrad.tensor import Tensor


class BasicConv2d(nn.Module):
    """conv -> batch norm -> ReLU, the unit every convolution of GoogLeNet is wrapped in.

    x: (N, in_channels, H, W) -> (N, out_channels, H', W'). The paper (2014) predates batch norm; adding
    it after every conv is what makes the network train from scratch without the paper's tricks.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
        bias: bool = False, eps: float = 1e-3,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
        self.bn = nn.BatchNorm2d(out_channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.normalize(self.conv(x))

    def normalize(self, conv_output: Tensor) -> Tensor:
        """The part after the convolution: batch norm, then ReLU."""
        # In place, as torchvision does: batch norm's output is a fresh array that only this ReLU reads and
        # that batch norm's backward does not need (it saves its input), so overwriting it saves one array
        # per layer (benchmarks/README.md has the figures). Were that ever not so, the version counter
        # would make backward raise rather than use overwritten values.
        return F.relu(self.bn(conv_output), inplace=True)


class Inception(nn.Module):
    """Four parallel branches concatenated along channels (paper Figure 2b, one row of Table 1).

    x: (N, in_channels, H, W) -> (N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W); every branch keeps H x W
    (stride 1, "same" padding), which is what lets the outputs be concatenated.
    """

    def __init__(
        self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int, pool_proj: int,
        conv_block: Callable[..., BasicConv2d] = BasicConv2d, branch3_kernel: int = 5,
    ) -> None:
        super().__init__()
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj
        self.branch1 = conv_block(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            conv_block(in_channels, ch3x3red, kernel_size=1),  # the 1x1 reduction
            conv_block(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            conv_block(in_channels, ch5x5red, kernel_size=1),
            conv_block(ch5x5red, ch5x5, kernel_size=branch3_kernel, padding=branch3_kernel // 2),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            conv_block(in_channels, pool_proj, kernel_size=1),  # the pool projection
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], dim=1)


class InceptionAux(nn.Module):
    """An auxiliary classifier (paper section 5): pool to 4x4, 1x1 conv, fc, ReLU, dropout, fc.

    x: (N, in_channels, H, W) -> (N, num_classes). Only used in training: its loss, weighted 0.3, adds
    gradient signal to the middle of the deep network and acts as a regulariser.

    Pooling: the paper uses a 5x5 average pool with stride 3, which turns the 14x14 maps of blocks 4a and
    4d (224x224 input) into 4x4. ``pool="avg5x5/3"`` does that whenever it yields 4x4 (maps 14 to 16
    wide, which includes the CIFAR stem's 16x16), and otherwise falls back to adaptive average pooling
    to 4x4, torchvision's rule (``pool="adaptive4x4"``, always). So fc1 always sees 128 x 4 x 4 = 2048
    features and a 32x32 image through the ImageNet stem (2x2 maps at block 4) still trains.
    """

    def __init__(
        self, in_channels: int, num_classes: int, conv_block: Callable[..., BasicConv2d] = BasicConv2d,
        pool: str = "adaptive4x4", dropout: float = 0.7, conv_channels: int = 128, hidden: int = 1024,
    ) -> None:
        super().__init__()
        if pool not in ("avg5x5/3", "adaptive4x4"):
            raise ValueError(f"InceptionAux: pool must be 'avg5x5/3' or 'adaptive4x4', got {pool!r}")
        self.pool = pool
        self.conv = conv_block(in_channels, conv_channels, kernel_size=1)
        self.fc1 = nn.Linear(conv_channels * 4 * 4, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[2:]
        if self.pool == "avg5x5/3" and (height - 5) // 3 + 1 == 4 and (width - 5) // 3 + 1 == 4:
            x = F.avg_pool2d(x, kernel_size=5, stride=3)
        else:
            x = F.adaptive_avg_pool2d(x, (4, 4))
        x = F.flatten(self.conv(x), 1)  # (N, 128 * 4 * 4)
        x = self.dropout(F.relu(self.fc1(x)))
        return self.fc2(x)

    def extra_repr(self) -> str:
        return f"pool={self.pool!r}"
