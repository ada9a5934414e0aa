"""Models built from :mod:`minigrad.nn`: Inception v1 (GoogLeNet), the fusion that runs it faster
(:func:`fuse_inception_1x1`), and the tools to load its weights (``.pth`` without torch, ``.safetensors``,
``.npz``)."""

from minigrad.models.fuse import Fused1x1Conv, FusedBranch, FusedInception, can_fuse_1x1, fuse_inception_1x1
from minigrad.models.inception import GoogLeNet, InceptionOutputs, googlenet_loss, inception_v1
from minigrad.models.weights import convert_weights, load_torch_state_dict, read_state_dict

__all__ = [
    "Fused1x1Conv", "FusedBranch", "FusedInception", "GoogLeNet", "InceptionOutputs", "can_fuse_1x1", "convert_weights",
    "fuse_inception_1x1", "googlenet_loss", "inception_v1", "load_torch_state_dict", "read_state_dict",
]
