"""Inception v1 (GoogLeNet): Szegedy et al., "Going deeper with convolutions" (2014), Table 1.

Read this file next to the paper. The network is a stem (a few plain convolutions that shrink the
image), nine Inception blocks in three stages separated by max pools, a global average pool, dropout
and one linear classifier; two auxiliary classifiers hang off blocks 4a and 4d during training.

An Inception block runs four branches side by side on the same input and concatenates them:
:mod:`minigrad.models.inception_blocks` holds it, ``BasicConv2d`` (conv, batch norm, ReLU) and the
auxiliary head; this file holds the network they make.

Two variants share this code (see :data:`VARIANTS`):

* ``"paper"``: the paper's layer sizes with batch norm after every convolution in place of the paper's
  two local response normalisations (as almost every PyTorch re-implementation does); convolutions keep
  their bias, branch 3 is a true 5x5, max pools are 3x3/2 with padding 1, the auxiliary heads
  average-pool 5x5/3. 13,393,352 parameters with the auxiliary heads, 7,013,112 without (1000 classes),
  about 1.58 G multiply-adds per 224x224 image.
* ``"torchvision"``: exactly ``torchvision.models.googlenet``, so its pretrained weights load with no
  renaming: bias-free convolutions, batch-norm eps 1e-3, a 3x3 conv in branch 3 (a known deviation
  of torchvision, kept for its weights), ceil-mode max pools without padding (maxpool4 2x2/2),
  auxiliary heads with adaptive average pooling to 4x4. 13,004,888 / 6,624,904 parameters.

Module and parameter names are torchvision's, so state-dict keys read ``conv1.conv.weight``,
``inception3a.branch2.1.bn.running_var``, ``aux1.fc1.weight``, ``fc.weight``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import numpy

import minigrad.functional as F
from minigrad import backend, nn
from minigrad.models.inception_blocks import BasicConv2d, Inception, InceptionAux
from minigrad.nn import init
from minigrad.tensor import Tensor

__all__ = [
    "INCEPTION_TABLE", "STEMS", "VARIANTS", "BasicConv2d", "GoogLeNet", "Inception", "InceptionAux",
    "InceptionChannels", "InceptionOutputs", "Variant", "googlenet_loss", "inception_v1", "scale_channels",
]


class InceptionChannels(NamedTuple):
    """One row of the paper's Table 1: the channel counts of one Inception block."""

    in_channels: int
    ch1x1: int  # branch 1: "#1x1"
    ch3x3red: int  # branch 2: "#3x3 reduce", the 1x1 conv before the 3x3
    ch3x3: int  # branch 2: "#3x3"
    ch5x5red: int  # branch 3: "#5x5 reduce"
    ch5x5: int  # branch 3: "#5x5"
    pool_proj: int  # branch 4: "pool proj", the 1x1 conv after the 3x3 max pool

    @property
    def out_channels(self) -> int:
        """The four branches are concatenated, so their widths add up."""
        return self.ch1x1 + self.ch3x3 + self.ch5x5 + self.pool_proj


#: Table 1 of the paper. A max pool 3x3/2 follows 3b and 4e; the auxiliary heads read 4a and 4d.
INCEPTION_TABLE: dict[str, InceptionChannels] = {
    #                             in  1x1  3x3red  3x3  5x5red  5x5  pool proj   # out  map at 224x224
    "inception3a": InceptionChannels(192,  64,   96,  128,   16,   32,   32),    # 256  28x28
    "inception3b": InceptionChannels(256, 128,  128,  192,   32,   96,   64),    # 480  28x28
    "inception4a": InceptionChannels(480, 192,   96,  208,   16,   48,   64),    # 512  14x14
    "inception4b": InceptionChannels(512, 160,  112,  224,   24,   64,   64),    # 512  14x14
    "inception4c": InceptionChannels(512, 128,  128,  256,   24,   64,   64),    # 512  14x14
    "inception4d": InceptionChannels(512, 112,  144,  288,   32,   64,   64),    # 528  14x14
    "inception4e": InceptionChannels(528, 256,  160,  320,   32,  128,  128),    # 832  14x14
    "inception5a": InceptionChannels(832, 256,  160,  320,   32,  128,  128),    # 832   7x7
    "inception5b": InceptionChannels(832, 384,  192,  384,   48,  128,  128),    # 1024  7x7
}


@dataclass(frozen=True)
class Variant:
    """Everything in which the paper's network and torchvision's googlenet differ, side by side."""

    conv_bias: bool  # a bias in every conv (redundant before batch norm, which subtracts the mean)
    bn_eps: float
    branch3_kernel: int  # 5 in the paper; torchvision uses 3 (its weights were trained that way)
    pool_padding: int  # stage max pools 3x3/2: padding 1 (floor mode) or 0 with ceil mode; both halve 112 -> 56
    pool_ceil_mode: bool
    last_pool_kernel: int  # maxpool4 between blocks 4e and 5a: 3x3/2 (paper) or 2x2/2 (torchvision)
    aux_pool: str  # "avg5x5/3" (paper section 5) or "adaptive4x4" (torchvision)
    dropout: float  # before the final classifier
    aux_dropout: float  # inside each auxiliary head
    weight_init: str  # "paper": N(0, 0.01) truncated at 2 std; "torchvision": see _initialise_weights


VARIANTS: dict[str, Variant] = {
    "paper": Variant(
        conv_bias=True, bn_eps=1e-5, branch3_kernel=5, pool_padding=1, pool_ceil_mode=False,
        last_pool_kernel=3, aux_pool="avg5x5/3", dropout=0.4, aux_dropout=0.7, weight_init="paper",
    ),
    "torchvision": Variant(
        conv_bias=False, bn_eps=1e-3, branch3_kernel=3, pool_padding=0, pool_ceil_mode=True,
        last_pool_kernel=2, aux_pool="adaptive4x4", dropout=0.2, aux_dropout=0.7, weight_init="torchvision",
    ),
}
STEMS = ("imagenet", "cifar")


class InceptionOutputs(NamedTuple):
    """What a GoogLeNet with auxiliary heads returns in training mode: ``aux1, aux2, logits = model(x)``."""

    aux1: Tensor
    aux2: Tensor
    logits: Tensor


def scale_channels(channels: int, width: float) -> int:
    """A channel count multiplied by ``width``, rounded half up, never below 8."""
    return max(8, int(channels * width + 0.5))


class GoogLeNet(nn.Module):
    """Inception v1. x: (N, 3, H, W) -> logits (N, num_classes), or InceptionOutputs in training.

    Prefer :func:`inception_v1`, which documents every argument. Layers, in forward order::

        conv1 maxpool1 conv2 conv3 maxpool2        stem, 224 -> 28 ("imagenet"); just conv1 for "cifar"
        inception3a inception3b maxpool3           28x28 -> 14x14
        inception4a (aux1) 4b 4c 4d (aux2) 4e maxpool4   14x14 -> 7x7
        inception5a inception5b                    7x7
        avgpool dropout fc                         global average pool, dropout, classifier

    With ``stem="cifar"`` the attributes maxpool1, conv2, conv3 and maxpool2 are None (they hold no
    parameters, so the state-dict keys are those of the ImageNet model minus ``conv2.*`` and
    ``conv3.*``, with ``conv1`` a 3x3 conv 3 -> 192); without auxiliary heads aux1 and aux2 are None.
    """

    def __init__(
        self, num_classes: int = 1000, aux_logits: bool = True, variant: str = "paper", stem: str = "imagenet",
        width: float = 1.0, dropout: float | None = None, aux_dropout: float | None = None,
        init_weights: bool = True, seed: int | None = None, transform_input: bool = False,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"GoogLeNet: variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        if stem not in STEMS:
            raise ValueError(f"GoogLeNet: stem must be one of {STEMS}, got {stem!r}")
        if not width > 0:
            raise ValueError(f"GoogLeNet: width must be positive (e.g. 0.25 or 1.0), got {width}")
        if num_classes < 1:
            raise ValueError(f"GoogLeNet: num_classes must be at least 1, got {num_classes}")
        settings = VARIANTS[variant]
        self.variant, self.stem, self.width = variant, stem, width
        self.aux_logits, self.transform_input = aux_logits, transform_input
        # The layers draw PyTorch's default initialisation from the global generator as they are built;
        # with a seed we redraw everything below from a local one and give the global one its state back.
        global_rng_state = backend.get_rng_state() if seed is not None else None

        def channels(count: int) -> int:
            return scale_channels(count, width)

        conv_block = partial(BasicConv2d, bias=settings.conv_bias, eps=settings.bn_eps)

        def stage_pool(kernel_size: int = 3) -> nn.MaxPool2d:
            return nn.MaxPool2d(kernel_size, stride=2, padding=settings.pool_padding, ceil_mode=settings.pool_ceil_mode)

        if stem == "imagenet":  # Table 1's first rows: 224 -> 112 -> 56 -> 56 -> 28
            self.conv1 = conv_block(3, channels(64), kernel_size=7, stride=2, padding=3)
            self.maxpool1 = stage_pool()
            self.conv2 = conv_block(channels(64), channels(64), kernel_size=1)
            self.conv3 = conv_block(channels(64), channels(192), kernel_size=3, padding=1)
            self.maxpool2 = stage_pool()
        else:  # CIFAR: keep 32x32, so Inception 3 runs at 32x32, 4 at 16x16 and 5 at 8x8
            self.conv1 = conv_block(3, channels(192), kernel_size=3, padding=1)
            self.maxpool1 = self.conv2 = self.conv3 = self.maxpool2 = None
        in_channels = channels(192)
        for name, row in INCEPTION_TABLE.items():
            block = Inception(in_channels, *(channels(count) for count in row[1:]), conv_block=conv_block,
                              branch3_kernel=settings.branch3_kernel)
            setattr(self, name, block)
            in_channels = block.out_channels
        self.maxpool3 = stage_pool()
        self.maxpool4 = stage_pool(settings.last_pool_kernel)

        if aux_logits:
            aux = partial(
                InceptionAux, num_classes=num_classes, conv_block=conv_block, pool=settings.aux_pool,
                dropout=settings.aux_dropout if aux_dropout is None else aux_dropout,
                conv_channels=channels(128), hidden=channels(1024),
            )
            self.aux1 = aux(self.inception4a.out_channels)
            self.aux2 = aux(self.inception4d.out_channels)
        else:
            self.aux1 = self.aux2 = None

        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(settings.dropout if dropout is None else dropout)
        self.fc = nn.Linear(in_channels, num_classes)

        generator = numpy.random.default_rng(seed) if seed is not None else None
        self._initialise_weights(settings.weight_init if init_weights else "pytorch", generator)
        if global_rng_state is not None:
            backend.set_rng_state(global_rng_state)

    def _initialise_weights(self, style: str, generator: Any) -> None:
        """Initialise every conv, linear and batch-norm layer.

        * "paper": weights ~ N(0, 0.01^2) truncated to +-2 std (redrawn outside), biases 0.
        * "torchvision": weights via ``trunc_normal_(std=0.01, a=-2, b=2)``. The bounds are absolute, so at
          std 0.01 nothing is ever truncated (older torchvision used scipy's truncnorm(-2, 2), i.e. +-2 std);
          linear biases keep PyTorch's default U(+-1/sqrt(fan_in)).
        * "pytorch" (``init_weights=False``): every layer's PyTorch default, kaiming_uniform(a=sqrt(5)).
        Batch norm always starts as the identity: weight 1, bias 0 (as built).
        """
        if style == "pytorch" and generator is None:
            return  # the layers drew exactly these values from the global generator as they were built
        for module in self.modules():
            if not isinstance(module, (nn.Conv2d, nn.Linear)):
                continue
            fan_in, _ = init.calculate_fan_in_and_fan_out(module.weight)
            if style == "paper":
                init.trunc_normal_(module.weight, std=0.01, a=-0.02, b=0.02, generator=generator)
            elif style == "torchvision":
                init.trunc_normal_(module.weight, std=0.01, a=-2.0, b=2.0, generator=generator)
            else:
                init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
            if module.bias is not None:
                if style == "paper":
                    init.zeros_(module.bias)
                else:
                    bound = 1 / math.sqrt(fan_in)
                    init.uniform_(module.bias, -bound, bound, generator=generator)

    def _transform_input(self, x: Tensor) -> Tensor:
        """torchvision's ``transform_input``: from ImageNet normalisation to the (x - 0.5) / 0.5 scaling
        its pretrained weights expect, channel by channel: x_c * std_c / 0.5 + (mean_c - 0.5) / 0.5."""
        channels = [
            x[:, c : c + 1] * (std / 0.5) + (mean - 0.5) / 0.5
            for c, (mean, std) in enumerate([(0.485, 0.229), (0.456, 0.224), (0.406, 0.225)])
        ]
        return F.cat(channels, dim=1)

    def forward(self, x: Tensor) -> Tensor | InceptionOutputs:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"GoogLeNet: expected images of shape (N, 3, H, W), got {x.shape}")
        if self.transform_input:
            x = self._transform_input(x)
        for layer in (self.conv1, self.maxpool1, self.conv2, self.conv3, self.maxpool2):
            if layer is not None:  # the CIFAR stem is conv1 alone
                x = layer(x)
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        use_aux = self.training and self.aux1 is not None
        aux1 = self.aux1(x) if use_aux else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if use_aux else None
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        x = F.flatten(self.avgpool(x), 1)  # (N, 1024): one number per channel
        logits = self.fc(self.dropout(x))
        return InceptionOutputs(aux1, aux2, logits) if use_aux else logits

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}, stem={self.stem!r}, width={self.width}"


def inception_v1(
    num_classes: int = 1000, aux_logits: bool = True, variant: str = "paper", stem: str = "imagenet",
    width: float = 1.0, dropout: float | None = None, aux_dropout: float | None = None, init_weights: bool = True,
    seed: int | None = None, transform_input: bool = False,
) -> GoogLeNet:
    """Build Inception v1 (GoogLeNet).

    num_classes: size of the classifier (and of the auxiliary classifiers).
    aux_logits: build the two auxiliary heads (paper section 5); training mode then returns
        ``InceptionOutputs(aux1, aux2, logits)``, eval mode always the logits alone.
    variant: "paper" (Table 1, 5x5 convs, 13,393,352 parameters) or "torchvision" (its googlenet layout,
        13,004,888 parameters); see :data:`VARIANTS` for every difference.
    stem: "imagenet" (7x7/2 conv, pool, 1x1, 3x3, pool: 224 -> 28) or "cifar" (one 3x3 conv 3 -> 192,
        stride 1: Inception 3 at 32x32, 4 at 16x16, 5 at 8x8 for CIFAR images).
    width: multiply every channel count (rounded, at least 8); 0.25 trains a small GoogLeNet in minutes.
    dropout, aux_dropout: override the variant's dropout (paper 0.4 and 0.7, torchvision 0.2 and 0.7).
    init_weights: the variant's truncated-normal initialisation; False keeps PyTorch's layer defaults.
    seed: draw the initial weights from ``numpy.random.default_rng(seed)``, leaving the global generator
        (``minigrad.manual_seed``) as it was; the same seed gives the same weights.
    transform_input: re-normalise ImageNet-normalised input the way torchvision's pretrained weights need.
    """
    return GoogLeNet(
        num_classes=num_classes, aux_logits=aux_logits, variant=variant, stem=stem, width=width, dropout=dropout,
        aux_dropout=aux_dropout, init_weights=init_weights, seed=seed, transform_input=transform_input,
    )


def googlenet_loss(
    outputs: Tensor | InceptionOutputs | tuple, targets: Any, aux_weight: float = 0.3, label_smoothing: float = 0.0
) -> Tensor:
    """The paper's training loss: cross_entropy(logits) + aux_weight * (cross_entropy(aux1) + cross_entropy(aux2)).

    outputs: what the model returned, InceptionOutputs (or any (aux1, aux2, logits) tuple) in training, or
    logits (N, num_classes) alone, which gives the plain cross-entropy. targets: (N,) class indices.
    """
    if isinstance(outputs, tuple):
        if len(outputs) != 3:
            raise ValueError(f"googlenet_loss: expected (aux1, aux2, logits), got a tuple of {len(outputs)}")
        aux1, aux2, logits = outputs
        loss = F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
        aux_loss = F.cross_entropy(aux1, targets, label_smoothing=label_smoothing) + F.cross_entropy(
            aux2, targets, label_smoothing=label_smoothing
        )
        return loss + aux_weight * aux_loss
    return F.cross_entropy(outputs, targets, label_smoothing=label_smoothing)
