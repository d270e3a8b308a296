"""Helpers of tests/models/test_nnx_models.py: abstract zoo models, parameter counts,
host-drawn variables in the Linen layout and their loading into a model (`load_linen`, from
poolnets.models.nnx.convert), and concrete models built without running Flax's
initialisers op by op."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from test_counts import IMAGENET

from poolnets import models as zoo
from poolnets.models.nnx.convert import load_linen, to_linen  # noqa: F401 -- the tests' import


def classes(name: str) -> int:
    return 1000 if name in IMAGENET else 10


def param_count(model: nnx.Module) -> int:
    return sum(math.prod(v.shape) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))


def abstract(name: str, **kw) -> zoo.ZooModel:
    kw.setdefault("num_classes", classes(name))
    return nnx.eval_shape(lambda: zoo.create(name, **kw))


def host_draw(shapes: dict) -> dict:
    """Values for a tree of shapes, drawn on the host (running Flax's initialisers op by op
    costs seconds): N(0, 0.3^2), and BatchNorm variances ("var") in [0.5, 1.5]."""
    rng = np.random.default_rng(4)

    def draw(path, s):
        if path[-1].key == "var":
            return jnp.asarray(rng.uniform(0.5, 1.5, s.shape), s.dtype)
        return jnp.asarray(0.3 * rng.normal(size=s.shape), s.dtype)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def host_variables(model: nnx.Module) -> dict:
    """Variables {"params", "batch_stats"} in the Linen layout of the (abstract) `model`,
    `host_draw`n in the order of the 0.1 Linen zoo's `init` tree."""
    tree, _ = to_linen(nnx.to_pure_dict(nnx.state(model, nnx.Param)),
                       nnx.to_pure_dict(nnx.state(model, nnx.BatchStat)))
    return host_draw({k: v for k, v in tree.items() if v})


def concrete(model: nnx.Module, seed: int = 0) -> nnx.Module:
    """The abstract `model` with host-drawn parameters and real RNG streams."""
    state = nnx.state(model)
    rng = np.random.default_rng(seed)
    flat = dict(nnx.to_flat_state(state))
    for i, variable in enumerate(flat.values()):
        s = variable.get_value()
        if isinstance(variable, nnx.RngKey):
            variable.set_value(jax.random.key(seed + i))
        elif isinstance(variable, nnx.RngCount):
            variable.set_value(jnp.zeros(s.shape, s.dtype))
        else:
            variable.set_value(jnp.asarray(0.3 * rng.normal(size=s.shape), s.dtype))
    nnx.update(model, nnx.from_flat_state(flat))
    return model
