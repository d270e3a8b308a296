"""Pretrained weights from other frameworks, read without those frameworks.

`torch_file.read_state_dict` (NumPy only) reads safetensors and `torch.save` files without
running pickle code; `torchvision` converts torchvision state dicts into poolnets variables
(`poolnets.models.load_torchvision`); `synthetic` makes seeded stand-in state dicts for the
exactness tests.
"""

from poolnets.weights.torch_file import UnsafePickleError, read_state_dict

__all__ = ["UnsafePickleError", "read_state_dict"]
