"""GoogLeNet in plain torch.nn: the reference the parity tests compare minigrad against.

Written independently of minigrad (its own copy of Table 1), mirroring the layout of
``torchvision.models.googlenet`` (torchvision itself is not a test dependency). The same builder makes
the paper variant (conv bias, 5x5 branch, padded floor-mode pools, 5x5/3 aux pooling) and the CIFAR stem,
with the module names of torchvision so that state dicts load both ways with no renaming.
"""

from __future__ import annotations

from collections import namedtuple

import torch
import torch.nn.functional as F
from torch import nn

TorchOutputs = namedtuple("TorchOutputs", ["aux1", "aux2", "logits"])

# torchvision's googlenet calls, i.e. the paper's Table 1:
# (in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj)
BLOCKS = [
    ("inception3a", 192, 64, 96, 128, 16, 32, 32),
    ("inception3b", 256, 128, 128, 192, 32, 96, 64),
    ("inception4a", 480, 192, 96, 208, 16, 48, 64),
    ("inception4b", 512, 160, 112, 224, 24, 64, 64),
    ("inception4c", 512, 128, 128, 256, 24, 64, 64),
    ("inception4d", 512, 112, 144, 288, 32, 64, 64),
    ("inception4e", 528, 256, 160, 320, 32, 128, 128),
    ("inception5a", 832, 256, 160, 320, 32, 128, 128),
    ("inception5b", 832, 384, 192, 384, 48, 128, 128),
]


class BasicConv2d(nn.Module):
    def __init__(self, in_channels, out_channels, bias, eps, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=bias, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=eps)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj, conv_block, k3):
        super().__init__()
        self.branch1 = conv_block(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            conv_block(in_channels, ch3x3red, kernel_size=1), conv_block(ch3x3red, ch3x3, kernel_size=3, padding=1)
        )
        self.branch3 = nn.Sequential(
            conv_block(in_channels, ch5x5red, kernel_size=1),
            conv_block(ch5x5red, ch5x5, kernel_size=k3, padding=k3 // 2),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            conv_block(in_channels, pool_proj, kernel_size=1),
        )

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    def __init__(self, in_channels, num_classes, conv_block, paper_pool, dropout, conv_channels, hidden):
        super().__init__()
        self.paper_pool = paper_pool
        self.conv = conv_block(in_channels, conv_channels, kernel_size=1)
        self.fc1 = nn.Linear(conv_channels * 16, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x):
        h, w = x.shape[2:]
        if self.paper_pool and (h - 5) // 3 + 1 == 4 and (w - 5) // 3 + 1 == 4:
            x = F.avg_pool2d(x, kernel_size=5, stride=3)
        else:
            x = F.adaptive_avg_pool2d(x, (4, 4))
        x = torch.flatten(self.conv(x), 1)
        x = F.relu(self.fc1(x), inplace=True)
        return self.fc2(self.dropout(x))


class TorchGoogLeNet(nn.Module):
    def __init__(self, num_classes=1000, aux_logits=True, variant="paper", stem="imagenet", width=1.0,
                 dropout=None, aux_dropout=None, transform_input=False):
        super().__init__()
        paper = variant == "paper"

        def ch(c):
            return max(8, int(c * width + 0.5))

        conv_block = lambda i, o, **kw: BasicConv2d(i, o, bias=paper, eps=1e-5 if paper else 1e-3, **kw)  # noqa: E731
        if paper:
            pool = lambda k=3: nn.MaxPool2d(k, stride=2, padding=1)  # noqa: E731
        else:
            pool = lambda k=3: nn.MaxPool2d(k, stride=2, ceil_mode=True)  # noqa: E731
        self.aux_logits, self.transform_input = aux_logits, transform_input
        if stem == "imagenet":
            self.conv1 = conv_block(3, ch(64), kernel_size=7, stride=2, padding=3)
            self.maxpool1 = pool()
            self.conv2 = conv_block(ch(64), ch(64), kernel_size=1)
            self.conv3 = conv_block(ch(64), ch(192), kernel_size=3, padding=1)
            self.maxpool2 = pool()
        else:
            self.conv1 = conv_block(3, ch(192), kernel_size=3, padding=1)
            self.maxpool1 = self.conv2 = self.conv3 = self.maxpool2 = None
        in_channels = ch(192)
        for name, _, *sizes in BLOCKS:
            sizes = [ch(s) for s in sizes]
            setattr(self, name, Inception(in_channels, *sizes, conv_block=conv_block, k3=5 if paper else 3))
            in_channels = sizes[0] + sizes[2] + sizes[4] + sizes[5]
        self.maxpool3 = pool()
        self.maxpool4 = pool(3 if paper else 2)
        if aux_logits:
            aux_p = 0.7 if aux_dropout is None else aux_dropout
            self.aux1 = InceptionAux(_out(self.inception4a), num_classes, conv_block, paper, aux_p, ch(128), ch(1024))
            self.aux2 = InceptionAux(_out(self.inception4d), num_classes, conv_block, paper, aux_p, ch(128), ch(1024))
        else:
            self.aux1 = self.aux2 = None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=(0.4 if paper else 0.2) if dropout is None else dropout)
        self.fc = nn.Linear(in_channels, num_classes)

    def _transform_input(self, x):
        if self.transform_input:  # torchvision's formula, verbatim
            x_ch0 = torch.unsqueeze(x[:, 0], 1) * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
            x_ch1 = torch.unsqueeze(x[:, 1], 1) * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
            x_ch2 = torch.unsqueeze(x[:, 2], 1) * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
            x = torch.cat((x_ch0, x_ch1, x_ch2), 1)
        return x

    def forward(self, x):
        x = self._transform_input(x)
        for layer in (self.conv1, self.maxpool1, self.conv2, self.conv3, self.maxpool2):
            if layer is not None:
                x = layer(x)
        x = self.inception3a(x)
        x = self.inception3b(x)
        x = self.maxpool3(x)
        x = self.inception4a(x)
        aux1 = self.aux1(x) if self.aux1 is not None and self.training else None
        x = self.inception4b(x)
        x = self.inception4c(x)
        x = self.inception4d(x)
        aux2 = self.aux2(x) if self.aux2 is not None and self.training else None
        x = self.inception4e(x)
        x = self.maxpool4(x)
        x = self.inception5a(x)
        x = self.inception5b(x)
        x = torch.flatten(self.avgpool(x), 1)
        x = self.fc(self.dropout(x))
        if self.training and self.aux_logits:
            return TorchOutputs(aux1, aux2, x)
        return x


def _out(block):
    """Output channels of an Inception block: the sum of its four branches' last convs."""
    return (block.branch1.conv.out_channels + block.branch2[1].conv.out_channels
            + block.branch3[1].conv.out_channels + block.branch4[1].conv.out_channels)


def torch_googlenet(**kwargs) -> TorchGoogLeNet:
    """The torch twin of ``minigrad.models.inception_v1(**kwargs)`` (init is torch's defaults: tests load
    minigrad's weights into it, or save its weights for minigrad to load)."""
    kwargs.pop("seed", None)
    kwargs.pop("init_weights", None)
    return TorchGoogLeNet(**kwargs)


def googlenet_loss(outputs, targets, aux_weight=0.3):
    """The paper's loss in torch: CE(logits) + aux_weight * (CE(aux1) + CE(aux2))."""
    if isinstance(outputs, tuple):
        aux1, aux2, logits = outputs
        return F.cross_entropy(logits, targets) + aux_weight * (
            F.cross_entropy(aux1, targets) + F.cross_entropy(aux2, targets))
    return F.cross_entropy(outputs, targets)


def calibrate_batch_norm(twin: TorchGoogLeNet, size: int = 64) -> TorchGoogLeNet:
    """Give a fresh twin batch-norm statistics like a trained network's, then put it in eval mode.

    Each batch norm gets a random affine part and, as running statistics, those of one random batch, so in
    eval mode every layer passes on a signal of size about 1; with the fresh statistics 0 and 1 the input
    would change the logits by a millionth of the classifier's bias and a comparison could not see it.
    Draws from torch's global generator (seed it first)."""
    with torch.no_grad():
        for module in twin.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = None  # a cumulative average: after one batch, that batch's statistics
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
        twin.train()
        twin(torch.randn(8, 3, size, size))
    return twin.eval()
