"""Seeded stand-in weights for a state dict layout, identical in any process (NumPy only).

The exactness tests compare poolnets against torchvision without downloading checkpoints:
`tools/make_torchvision_fixtures_models.py` (with torch) and the test suite (without) both
fill the same layout from this generator, so only the small outputs are stored as fixtures.
Each tensor draws from its own `np.random.default_rng([seed, crc32(name)])`, so values do not
depend on the order of the keys. Scales keep activations O(1) through deep nets:
conv/linear weights N(0, 2 / fan_in) (He et al. 2015), BatchNorm weight U(0.5, 1),
bias N(0, 0.1^2), running_mean N(0, 0.1^2), running_var U(0.5, 1.5).
"""

from __future__ import annotations

import zlib

import numpy as np


def synthetic_tensor(name: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """The stand-in value of state-dict entry `name` with `shape`."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return np.asarray(rng.integers(1, 1000), np.int64)
    if leaf == "running_mean" or leaf == "bias":
        return (0.1 * rng.standard_normal(shape)).astype(np.float32)
    if leaf == "running_var":
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    if leaf == "weight" and len(shape) == 1:
        return rng.uniform(0.5, 1.0, shape).astype(np.float32)
    if leaf == "weight":
        fan_in = int(np.prod(shape[1:]))
        return (rng.standard_normal(shape, np.float32) * np.float32(np.sqrt(2.0 / fan_in)))
    raise ValueError(f"no stand-in rule for state-dict entry {name!r}")


def synthetic_state_dict(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    """`{name: synthetic_tensor(name, shape, seed)}` for every entry of `shapes`."""
    return {name: synthetic_tensor(name, tuple(shape), seed) for name, shape in shapes.items()}


def synthetic_input(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A float32 N(0, 1) input batch of `shape`."""
    return np.random.default_rng([seed, 1]).standard_normal(shape, np.float32)
