"""Models built from :mod:`minigrad.nn`: Inception v1 (GoogLeNet) and the tools to load its weights (``.pth``
without torch, ``.safetensors``, ``.npz``)."""

from minigrad.models.inception import GoogLeNet, InceptionOutputs, googlenet_loss, inception_v1
from minigrad.models.weights import convert_weights, load_torch_state_dict, read_state_dict

__all__ = ["GoogLeNet", "InceptionOutputs", "convert_weights", "googlenet_loss", "inception_v1",
           "load_torch_state_dict", "read_state_dict"]
