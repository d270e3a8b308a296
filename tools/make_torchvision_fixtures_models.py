"""Fixtures for tests/models/test_torchvision_weights.py, computed by torchvision itself.

Needs torch + torchvision (not poolnets' dependencies; install them by hand, e.g. in a
separate venv) and NumPy. Run from the repository root:

    /tmp/tvvenv/bin/python tools/make_torchvision_fixtures_models.py [--tiny-only]

For every architecture poolnets converts (resnet18..152, vgg11..19, vgg*_bn) it fills
torchvision's `state_dict()` from `poolnets.weights.synthetic` (seeded NumPy, so the tests
rebuild identical weights without torch), runs the model in eval mode on a seeded input and
writes tests/models/fixtures/torchvision_<name>.npz with: the state dict's keys and shapes,
the logits, a checksum of the weights, and (for the architectures the suite runs) 4 channels
of image 0 after the stem pool / each stage (ResNet) or each pool (VGG), channels-last.
Also writes three tiny `torch.save` files for the reader tests: a zip-format and a legacy-
format state dict with strided/offset views and several dtypes (values in
torchvision_tiny_expected.npz), and a malicious pickle that calls os.system when unpickled.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import numpy as np
import torch
import torchvision

# The generator is loaded by file path: poolnets' package imports need more than NumPy.
_spec = importlib.util.spec_from_file_location("synthetic", os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "poolnets", "weights",
    "synthetic.py"))
synthetic = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(synthetic)
synthetic_input, synthetic_state_dict = synthetic.synthetic_input, synthetic.synthetic_state_dict

OUT = os.path.join("tests", "models", "fixtures")
SEED = 2026
RESNET_INPUT = (2, 3, 61, 64)  # odd height: exercises the padding/stride arithmetic
VGG_INPUT = (2, 3, 64, 96)  # last map 2x3 -> the 7x7 adaptive pool averages unequal bins
ARCHS = [f"resnet{d}" for d in (18, 34, 50, 101, 152)] + [
    f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")]
WITH_ACTIVATIONS = ("resnet18", "resnet50", "vgg11", "vgg11_bn")


def probes(name: str, model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Layers whose outputs are recorded, under poolnets' module names."""
    if name.startswith("resnet"):
        return {"stem_pool": model.maxpool,
                **{f"stage{i}": getattr(model, f"layer{i}") for i in range(1, 5)}}
    pools = [m for m in model.features if isinstance(m, torch.nn.MaxPool2d)]
    return {f"pool{i}": m for i, m in enumerate(pools)}


def architecture_fixture(name: str) -> dict[str, np.ndarray]:
    model = getattr(torchvision.models, name)(weights=None).eval()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    weights = synthetic_state_dict(shapes, SEED)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    x = synthetic_input(RESNET_INPUT if name.startswith("resnet") else VGG_INPUT, SEED)
    seen: dict[str, np.ndarray] = {}
    hooks = []
    if name in WITH_ACTIVATIONS:
        for label, layer in probes(name, model).items():
            hooks.append(layer.register_forward_hook(
                lambda _m, _i, out, label=label: seen.__setitem__(
                    label, out[0, :4].permute(1, 2, 0).numpy().copy())))
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    for h in hooks:
        h.remove()
    checksum = sum(float(np.sum(v, dtype=np.float64)) for v in weights.values())
    return {
        "keys": np.array(json.dumps(list(shapes.items()))),
        "input_shape": np.array(x.shape),
        "seed": np.array(SEED),
        "weights_checksum": np.array(checksum),
        "logits": logits,
        **{f"act_{k}": v for k, v in seen.items()},
        "versions": np.array(f"torch {torch.__version__}, torchvision {torchvision.__version__}"),
    }


class RunsCode:
    """Unpickles into a call of os.system: what a hostile checkpoint would do."""

    def __reduce__(self):
        return (os.system, ("echo pwned > PWNED_BY_PICKLE",))


def tiny_files() -> None:
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = {
        "weight": base.t(),  # strides (1, 6)
        "bias": base[1, 2:5],  # storage offset 8, storage shared with weight
        "running_var": torch.arange(3, dtype=torch.float16) / 4,
        "num_batches_tracked": torch.tensor(7),
        "mask": torch.tensor([True, False, True]),
        "scale": torch.linspace(-1, 1, 5, dtype=torch.float64),
        "bf16": torch.tensor([1.5, -2.25, 3e38], dtype=torch.bfloat16),
    }
    torch.save(state, os.path.join(OUT, "torchvision_tiny.pth"))
    torch.save(state, os.path.join(OUT, "torchvision_tiny_legacy.pth"),
               _use_new_zipfile_serialization=False)
    np.savez(os.path.join(OUT, "torchvision_tiny_expected.npz"),
             **{k: (v.float() if v.dtype == torch.bfloat16 else v).numpy()
                for k, v in state.items()})  # NumPy has no bfloat16: its values as float32
    torch.save({"weight": torch.ones(2), "hook": RunsCode()},
               os.path.join(OUT, "torchvision_malicious.pth"))


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    tiny_files()
    if "--tiny-only" in sys.argv:
        return
    for name in ARCHS:
        fixture = architecture_fixture(name)
        path = os.path.join(OUT, f"torchvision_{name}.npz")
        np.savez_compressed(path, **fixture)
        print(f"{path}: {os.path.getsize(path)} bytes, logits std "
              f"{fixture['logits'].std():.3g}", flush=True)


if __name__ == "__main__":
    main()
