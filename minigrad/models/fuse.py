"""Model transformations that compute the same network faster: :func:`fuse_inception_1x1`.

In every Inception block three 1x1 convolutions read the block's input x: branch1, and the "reduce"
convolutions branch2[0] and branch3[0]. Their weights stacked along the output channels make one
convolution whose output channels are theirs side by side: one pass over x and one matrix multiply
instead of three, and one input gradient instead of three to add up. Each piece then gets its own
batch norm and ReLU. That is the same arithmetic in a different order, so the results agree up to
rounding, and the model keeps every parameter and buffer:

    >>> model = fuse_inception_1x1(inception_v1(num_classes=10, stem="cifar"))   # as `minigrad train` does

``benchmarks/README.md`` says how much it saves. As ``torch.ao.quantization.fuse_modules`` is for PyTorch,
fusing is a step the user takes on purpose: an unfused model runs the paper's modules one by one, which
``minigrad.summary`` and ``minigrad.viz`` then show as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import minigrad.functional as F
from minigrad import nn
from minigrad.models.inception_blocks import BasicConv2d, Inception
from minigrad.tensor import Tensor


class Fused1x1Conv(nn.Module):
    """Several 1x1 BasicConv2d that read the same input, run as one convolution.

    x: (N, C_in, H, W) -> one (N, C_i, H, W) per BasicConv2d, in order (an Inception block's branch1,
    branch2[0], branch3[0]). The BasicConv2d stay where they were, and their parameters keep their
    names in the state dict: this module only reads them and has no parameters of its own. The weights
    are stacked afresh at every call, so an optimizer step or ``load_state_dict`` on them counts at the
    next forward; F.cat and F.split are differentiable, so each weight still receives its own gradient.
    """

    def __init__(self, blocks: Sequence[BasicConv2d]) -> None:
        super().__init__()
        self.blocks = tuple(blocks)  # a tuple, which Module does not register: they belong to the branches
        self.in_channels = self.blocks[0].conv.in_channels

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        convs = [block.conv for block in self.blocks]
        weight = F.cat([conv.weight for conv in convs], dim=0)  # (C_1 + C_2 + C_3, C_in, 1, 1)
        bias = None if convs[0].bias is None else F.cat([conv.bias for conv in convs], dim=0)
        pieces = F.split(F.conv2d(x, weight, bias), [conv.out_channels for conv in convs], dim=1)
        return tuple(block.normalize(piece) for block, piece in zip(self.blocks, pieces))

    def extra_repr(self) -> str:
        sizes = " + ".join(str(block.conv.out_channels) for block in self.blocks)
        return f"{self.in_channels} -> {sizes}, kernel_size=1"


class FusedBranch(nn.Sequential):
    """branch2 or branch3 of a :class:`FusedInception`: the same modules, but its first one, the 1x1
    reduction, runs inside ``fused_1x1``, so forward takes the reduced map and runs the rest.

    reduced: (N, ch_red, H, W) -> (N, ch_out, H, W).
    """

    def forward(self, reduced: Tensor) -> Tensor:
        for module in list(self)[1:]:
            reduced = module(reduced)
        return reduced


class FusedInception(nn.Module):
    """An Inception block whose three 1x1 convolutions that read x run as one (:class:`Fused1x1Conv`).

    x: (N, in_channels, H, W) -> (N, out_channels, H, W), equal to the Inception it was made from (up to
    rounding), made of the same modules, so the same parameters, buffers and state-dict keys.
    ``fused_1x1`` does the work of branch1, branch2[0] and branch3[0]; branch2 and branch3 become
    :class:`FusedBranch` (the same modules, starting from the reduced map), branch1 and branch4 stay.
    """

    def __init__(self, block: Inception) -> None:
        super().__init__()
        self.out_channels = block.out_channels
        self.fused_1x1 = Fused1x1Conv([block.branch1, block.branch2[0], block.branch3[0]])
        self.branch1, self.branch2 = block.branch1, FusedBranch(*block.branch2)
        self.branch3, self.branch4 = FusedBranch(*block.branch3), block.branch4
        self.train(block.training)

    def forward(self, x: Tensor) -> Tensor:
        out1, reduced3, reduced5 = self.fused_1x1(x)
        return F.cat([out1, self.branch2(reduced3), self.branch3(reduced5), self.branch4(x)], dim=1)


def can_fuse_1x1(block: Inception) -> bool:
    """Whether ``block``'s branch1, branch2[0] and branch3[0] can run as one convolution: each a plain
    BasicConv2d (a custom ``conv_block`` may compute anything) with a 1x1 kernel, stride 1, no padding,
    no dilation, one group, and all three with a bias or all three without."""
    blocks = (block.branch1, block.branch2[0], block.branch3[0])
    if not all(type(conv_block) is BasicConv2d for conv_block in blocks):
        return False
    convs = [conv_block.conv for conv_block in blocks]
    return all(
        conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.padding in ((0, 0), "valid")
        and conv.dilation == (1, 1) and conv.groups == 1 and (conv.bias is None) == (convs[0].bias is None)
        for conv in convs
    )


def fuse_inception_1x1(model: nn.Module) -> nn.Module:
    """Fuse the three 1x1 convolutions of every Inception block of ``model``; returns the model.

    model: a GoogLeNet, or any Module holding :class:`Inception` blocks. Changed in place, like
    ``model.to()``: each block that :func:`can_fuse_1x1` is replaced by a :class:`FusedInception` holding
    the very same branch modules (blocks that cannot are left as they are; an Inception passed alone
    comes back as a new FusedInception). Every parameter and buffer is the same object as before, so:

    * the state-dict keys are unchanged, and checkpoints load into fused and unfused models alike;
    * an optimizer built on ``model.parameters()`` before fusing still updates the model;
    * each batch norm normalises the same channels and keeps its own running statistics.

    Raises ValueError when no block of ``model`` can be fused (fusing an already fused model is allowed
    and changes nothing).
    """
    if isinstance(model, Inception):
        if not can_fuse_1x1(model):
            raise ValueError(_nothing_to_fuse(model))
        return FusedInception(model)
    fused = 0
    for _, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, FusedInception):
                fused += 1
            elif isinstance(child, Inception) and can_fuse_1x1(child):
                setattr(parent, name, FusedInception(child))
                fused += 1
    if not fused:
        raise ValueError(_nothing_to_fuse(model))
    return model


def _nothing_to_fuse(model: nn.Module) -> str:
    return (
        f"fuse_inception_1x1: {type(model).__name__} has no Inception block whose 1x1 convolutions can be fused "
        "(branch1, branch2[0] and branch3[0] must be plain BasicConv2d, 1x1, stride 1, no padding, one group); "
        "build the model with minigrad.models.inception_v1, or run it unfused"
    )
