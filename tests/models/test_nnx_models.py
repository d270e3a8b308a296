"""The NNX zoo (`poolnets.models.nnx`) against the Linen zoo and the model contract.

Counts and shapes go through `nnx.eval_shape` (nothing is computed). Numeric parity
builds each NNX model abstractly, loads the Linen model's host-drawn variables into it
(`load_linen`) and compares both outputs under one jit at tiny widths.
"""

from __future__ import annotations

import math

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from test_counts import IMAGENET, PUBLISHED

from poolnets import models as linen_models
from poolnets.models import nnx as zoo
from poolnets.nn import registry as linen_registry

X32 = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)


def classes(name: str) -> int:
    return 1000 if name in IMAGENET else 10


def param_count(model: nnx.Module) -> int:
    return sum(math.prod(v.shape) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))


def abstract(name: str, **kw) -> zoo.ZooModel:
    kw.setdefault("num_classes", classes(name))
    return nnx.eval_shape(lambda: zoo.create(name, **kw))


def linen_count(name: str, shape: tuple[int, ...], **kw) -> int:
    module = linen_models.create(name, num_classes=kw.pop("num_classes", classes(name)), **kw)
    params = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros(shape))["params"]
    return sum(math.prod(v.shape) for v in jax.tree.leaves(params))


def host_variables(module, x: np.ndarray) -> dict:
    """The Linen module's variables at their init shapes, drawn on the host (running
    Flax's initialisers op by op costs seconds); BatchNorm variances are positive."""
    keys = {"params": jax.random.key(0), "pool": jax.random.key(1)}
    shapes = jax.eval_shape(lambda: module.init(keys, x, train=False))
    rng = np.random.default_rng(4)

    def draw(path, s):
        if path[-1].key == "var":
            return jnp.asarray(rng.uniform(0.5, 1.5, s.shape), s.dtype)
        return jnp.asarray(0.3 * rng.normal(size=s.shape), s.dtype)

    return jax.tree_util.tree_map_with_path(draw, flax.core.unfreeze(shapes))


def load_linen(model: nnx.Module, variables: dict) -> None:
    """Linen variables into the NNX model: the NNX attribute paths are the Linen module
    names, but for the strided-conv downsample's inner `conv` (Linen: `Conv_0`)."""
    linen = {(c, *path): v for c in ("params", "batch_stats")
             for path, v in flax.traverse_util.flatten_dict(variables.get(c, {})).items()}
    state = nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))
    flat = dict(nnx.to_flat_state(state))
    wanted = set()
    for path, variable in flat.items():
        collection = "params" if isinstance(variable, nnx.Param) else "batch_stats"
        key = (collection, *("Conv_0" if p == "conv" else str(p) for p in path))
        wanted.add(key)
        variable.set_value(linen[key])
    assert wanted == set(linen), sorted(set(linen) ^ wanted)
    nnx.update(model, nnx.from_flat_state(flat))


# --- Counts -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_parameter_count(name):
    assert param_count(abstract(name)) == PUBLISHED[name]


def test_every_linen_model_has_an_nnx_twin_and_patterns_filter():
    assert zoo.list_models() == linen_models.list_models()
    assert zoo.list_models("resnet1*") == ["resnet101", "resnet110", "resnet152", "resnet18"]
    assert zoo.list_models("vgg*_bn") == [f"vgg{n}_bn" for n in (11, 13, 16, 19)]
    assert zoo.downsample_names() == linen_registry.downsample_names()
    assert zoo.head_names() == linen_registry.head_names()


def test_lenet5_1998_and_allcnn_counts():
    assert param_count(abstract("lenet5_1998")) == 60_850  # 60,000 (paper) + 850 output
    assert param_count(abstract("allcnn_c")) == 1_369_738


# Family x downsample x head (and the other options): the NNX model holds exactly the
# Linen model's parameters, so the architectures agree option by option.
OPTION_CASES = [
    ("lenet5", (1, 32, 32, 1), dict(downsample="gated", head="map", width=0.5)),
    ("lenet5", (1, 32, 32, 1), dict(downsample="lip", head="attention")),
    ("lenet5", (1, 32, 1), dict(spatial_dims=1, downsample="tree", head="spp")),
    ("lenet5_1998", (1, 32, 32, 1), dict(downsample="max", head="gem")),
    ("resnet20", (1, 32, 32, 3), dict(downsample="mixed", head="catavgmax", width=0.5)),
    ("resnet32", (1, 16, 16, 16, 3), dict(spatial_dims=3, downsample="gem", width=0.25)),
    ("vgg11_bn", (1, 32, 32, 3), dict(downsample="strided_conv", head="avgmax", width=1 / 16)),
    ("vgg13", (1, 64, 3), dict(spatial_dims=1, downsample="subsample", width=1 / 16)),
    ("resnet50", (1, 64, 64, 3), dict(downsample="gated", downsample_blocks=True,
                                      width=1 / 16)),
    ("resnet18", (1, 64, 64, 3), dict(downsample="avg", head="flatten", width=1 / 16)),
    ("allcnn_c", (1, 32, 32, 3), dict(downsample="mixed", head="catavgmax", width=0.25)),
    ("allcnn_c", (1, 32, 32, 3), dict(head="spp", class_map_relu=False, width=0.25)),
]


@pytest.mark.parametrize("name,shape,kw", OPTION_CASES, ids=lambda c: str(c))
def test_options_give_the_linen_parameter_count(name, shape, kw):
    model = abstract(name, input_size=shape[1:-1], in_channels=shape[-1], **kw)
    assert param_count(model) == linen_count(name, shape, **kw)
    out = nnx.eval_shape(lambda m, x: m(x), model, jax.ShapeDtypeStruct(shape, jnp.float32))
    assert out.shape == (1, classes(name)) and out.dtype == jnp.float32


# --- Numeric parity with the Linen models -------------------------------------------------

PARITY_CASES = [
    ("lenet5", (2, 32, 32, 1), dict(width=0.5, downsample="gated", head="gem")),
    ("lenet5_1998", (2, 32, 32, 1), {}),
    ("resnet20", (2, 16, 16, 3), dict(width=0.25, downsample="mixed", depth=8)),
    ("vgg11_bn", (2, 32, 32, 3), dict(width=1 / 32, hidden=16)),
    ("allcnn_c", (2, 16, 16, 3), dict(width=0.05, head="catavgmax")),
    ("resnet50", (2, 32, 32, 3), dict(width=1 / 16, downsample="avg", downsample_blocks=True,
                                      head="map", stage_sizes=(1, 2, 1, 1))),
]


def parity_pair(name, shape, kw):
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    linen = linen_models.create(name, num_classes=5, **kw)
    variables = host_variables(linen, x)
    model = nnx.eval_shape(lambda: zoo.create(name, num_classes=5, in_channels=shape[-1],
                                              input_size=shape[1:-1], **kw))
    load_linen(model, variables)
    return x, linen, variables, model


@pytest.mark.parametrize("name,shape,kw", PARITY_CASES, ids=lambda c: str(c))
def test_outputs_equal_the_linen_model_given_its_weights(name, shape, kw):
    x, linen, variables, model = parity_pair(name, shape, kw)
    graphdef, state = nnx.split(model)

    @jax.jit
    def both(state, x):
        m = nnx.merge(graphdef, state)
        maps = m.forward_intermediates(x)
        return m(x), linen.apply(variables, x, train=False), m.forward_head(maps[-1])

    ours, theirs, from_maps = both(state, x)
    np.testing.assert_allclose(ours, theirs, rtol=2e-5, atol=2e-5)
    # forward_intermediates' last map is forward_features' (the head gives the logits).
    np.testing.assert_allclose(from_maps, ours, rtol=1e-6, atol=1e-6)


def test_train_step_updates_batch_stats_as_linen():
    x, linen, variables, model = parity_pair("resnet20", (4, 8, 8, 3), dict(width=0.25, depth=8))
    graphdef, state = nnx.split(model)

    @jax.jit
    def both(state, x):
        m = nnx.merge(graphdef, state)
        ours = m(x, train=True)
        theirs, updates = linen.apply(variables, x, train=True, mutable=["batch_stats"])
        return ours, theirs, nnx.state(m, nnx.BatchStat), updates["batch_stats"]

    ours, theirs, stats, linen_stats = both(state, x)
    np.testing.assert_allclose(ours, theirs, rtol=2e-5, atol=2e-5)
    flat = {tuple(map(str, k)): v.get_value() for k, v in nnx.to_flat_state(stats)}
    linen_flat = flax.traverse_util.flatten_dict(linen_stats)
    assert flat.keys() == linen_flat.keys()
    for key, value in flat.items():
        np.testing.assert_allclose(value, linen_flat[key], rtol=2e-5, atol=2e-6)
    before = {tuple(map(str, k)): v.get_value() for k, v in
              nnx.to_flat_state(nnx.state(model, nnx.BatchStat))}
    assert any(not np.allclose(before[k], flat[k]) for k in flat)  # the step moved them
