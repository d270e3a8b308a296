"""Writes a reference output of OpenCLIP's `AttentionPool2d` (CLIP's modified-ResNet head).

Not part of the package or the test suite (which never import torch). Run from a venv
with torch, torchvision and open-clip-torch (installed with --no-deps; only its
`modified_resnet` and `utils` modules are loaded, without the package's heavy __init__):

    /tmp/tvvenv/bin/pip install --no-deps open-clip-torch==3.3.0
    /tmp/tvvenv/bin/python tools/make_open_clip_fixture_attention_pool.py

Output: tests/nnx/fixtures/open_clip_attention_pool.npz with the input (channels-last),
every parameter (torch layout) and the output; tests/nnx/test_nnx_attention.py loads the
parameters into `poolnets.nnx.AttentionPool` (`poolnets.nnx.attention.load_clip`) and
compares.
"""

from __future__ import annotations

import importlib
import pathlib
import sys
import types

import numpy as np
import torch

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "nnx" / "fixtures"


def load_attention_pool_class():
    spec = importlib.util.find_spec("open_clip")
    package = types.ModuleType("open_clip")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["open_clip"] = package  # skip open_clip/__init__.py and its dependencies
    return importlib.import_module("open_clip.modified_resnet").AttentionPool2d


def main() -> None:
    torch.manual_seed(0)
    pool = load_attention_pool_class()(spacial_dim=3, embed_dim=16, num_heads=4, output_dim=8)
    pool.eval()
    with torch.no_grad():  # nonzero biases, so their mapping is tested too
        for layer in (pool.q_proj, pool.k_proj, pool.v_proj, pool.c_proj):
            layer.bias.normal_()
    x = torch.randn(2, 16, 3, 3)
    with torch.no_grad():
        y = pool(x)
    arrays = {name: p.detach().numpy() for name, p in pool.state_dict().items()}
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT / "open_clip_attention_pool.npz", x=x.numpy().transpose(0, 2, 3, 1),
                        y=y.numpy(), num_heads=np.array(4), **arrays)
    print("wrote", OUT / "open_clip_attention_pool.npz", sorted(arrays))


if __name__ == "__main__":
    main()
