"""Pretrained weights from other frameworks, read without those frameworks.

`reader.read_state_dict` (NumPy only) reads safetensors and `torch.save` files (`torch_file`)
without running pickle code, bounded in memory by the file's size and checked for NaN/Inf;
`torchvision` converts torchvision state dicts into poolnets variables along a layout the
caller gives (the models' `load_torchvision` entry points own it); `synthetic` makes seeded
stand-in state dicts for the exactness tests.
"""

from poolnets.weights.reader import read_state_dict
from poolnets.weights.torch_file import UnsafePickleError

__all__ = ["UnsafePickleError", "read_state_dict"]
