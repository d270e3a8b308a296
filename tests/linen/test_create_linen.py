"""`create_linen`: the NNX zoo models as Linen modules through Flax's bridge. Same parameter
count as the NNX model for all 21 names (jax.eval_shape), variables under the NNX
attribute paths, outputs equal to the NNX model given the same weights for every family at
tiny widths, BatchNorm statistics updated in training, and the bridge's rng streams."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from nnx_zoo_helpers import classes, host_draw  # noqa: E402
from test_counts import PUBLISHED  # noqa: E402

from poolnets import models as zoo  # noqa: E402

# Counts of the two models without a published figure (as tests/models/test_nnx_models.py).
COUNTS = {**PUBLISHED, "lenet5_1998": 60_850, "allcnn_c": 1_369_738}


def count(tree) -> int:
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


# One model per family: the bridge maps each nnx.Param to one Linen param, so a family
# whose deepest block counts right counts right at every depth (the NNX counts of all 21
# are asserted in tests/models/test_nnx_models.py); the deep ResNets cost ~1 s each here.
FAMILY_CASES = ("lenet5", "lenet5_1998", "vgg11_bn", "resnet50", "resnet20", "allcnn_c")


def test_one_model_per_family_has_its_parameter_count():
    assert sorted(COUNTS) == zoo.list_models()
    for name in FAMILY_CASES:
        module = zoo.create_linen(name, num_classes=classes(name))
        channels = 1 if name.startswith("lenet") else 3
        x = jax.ShapeDtypeStruct((1, 32, 32, channels), jnp.float32)
        # VGG's flatten head is built for its published 224 input; 32 gives the same
        # adaptive 7x7 grid, so its count does not depend on the input size.
        variables = jax.eval_shape(lambda x, m=module: m.init(jax.random.key(0), x), x)
        assert count(variables["params"]) == COUNTS[name], name


# One case per family, options as in the NNX zoo's own parity cases.
CASES = [
    ("lenet5", (2, 32, 32, 1), dict(width=0.5, downsample="gated", head="map")),
    ("lenet5_1998", (2, 32, 32, 1), {}),
    ("resnet20", (2, 16, 16, 3), dict(width=0.25, downsample="mixed", depth=8)),
    ("vgg11_bn", (2, 32, 32, 3), dict(width=1 / 32, hidden=16)),
    ("allcnn_c", (2, 16, 16, 3), dict(width=0.05, head="catavgmax")),
    ("resnet50", (2, 32, 32, 3), dict(width=1 / 16, downsample="avg", downsample_blocks=True,
                                      stage_sizes=(1, 1, 1, 1))),
]


def host_variables(module, x: np.ndarray) -> dict:
    """The Linen module's variables at their init shapes, `host_draw`n."""
    keys = {"params": jax.random.key(0), "pool": jax.random.key(1)}
    shapes = jax.eval_shape(lambda: module.init(keys, x, train=False))
    return host_draw(flax.core.unfreeze(shapes))


def pair(name, shape, kw):
    """The Linen module, host-drawn variables at its init shapes, and the abstract NNX model
    (same options) holding exactly those variables."""
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    options = dict(in_channels=shape[-1], input_size=shape[1:-1], **kw)
    module = zoo.create_linen(name, num_classes=5, **options)
    variables = host_variables(module, x)
    model = nnx.eval_shape(lambda: zoo.create(name, num_classes=5, **options))
    state = dict(nnx.to_flat_state(nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))))
    linen = {(c, *p): v for c in variables
             for p, v in flax.traverse_util.flatten_dict(variables[c]).items()}
    nnx_paths = {("params" if isinstance(v, nnx.Param) else "batch_stats", *map(str, p)): p
                 for p, v in state.items()}
    assert set(linen) == set(nnx_paths), sorted(set(linen) ^ set(nnx_paths))  # same paths
    for key, path in nnx_paths.items():
        state[path].set_value(jnp.asarray(linen[key]))
    nnx.update(model, nnx.from_flat_state(state))
    return x, module, variables, model


def test_outputs_equal_the_nnx_model_for_every_family():
    pairs = [pair(*case) for case in CASES]
    splits = [nnx.split(model) for *_, model in pairs]

    @jax.jit
    def run(states, xs):
        return [(nnx.merge(g, s)(x), module.apply(v, x, train=False))
                for (g, _), s, x, (_, module, v, _) in zip(splits, states, xs, pairs, strict=True)]

    results = run([s for _, s in splits], [x for x, *_ in pairs])
    for (name, *_), (ours, theirs) in zip(CASES, results, strict=True):
        np.testing.assert_allclose(theirs, ours, rtol=1e-6, atol=1e-6, err_msg=name)


def test_train_updates_batch_stats_as_the_nnx_model():
    x, module, variables, model = pair("resnet20", (4, 8, 8, 3), dict(width=0.25, depth=8))
    graphdef, state = nnx.split(model)

    @jax.jit
    def both(state, x):
        m = nnx.merge(graphdef, state)
        logits = m(x, train=True)
        theirs, updates = module.apply(variables, x, train=True, mutable=["batch_stats"])
        return logits, theirs, nnx.state(m, nnx.BatchStat), updates["batch_stats"]

    ours, theirs, stats, updated = both(state, x)
    np.testing.assert_allclose(theirs, ours, rtol=1e-6, atol=1e-6)
    flat = {tuple(map(str, k)): v.get_value() for k, v in nnx.to_flat_state(stats)}
    linen_flat = flax.traverse_util.flatten_dict(updated)
    assert flat.keys() == linen_flat.keys()
    moved = False
    for key, value in flat.items():
        np.testing.assert_allclose(linen_flat[key], value, rtol=1e-6, atol=1e-7)
        moved |= not np.allclose(linen_flat[key], flax.traverse_util.flatten_dict(
            variables["batch_stats"])[key])
    assert moved  # the step changed the statistics


def test_random_pools_and_dropout_draw_from_linens_streams():
    x, module, variables, _ = pair("lenet5", (2, 32, 32, 1),
                                   dict(width=0.25, downsample="stochastic"))

    @jax.jit
    def run(k1, k2):
        return [module.apply(variables, x, train=train, rngs={"pool": k, "dropout": k})
                for train in (True, False) for k in (k1, k2)]

    train1, train2, eval1, eval2 = run(jax.random.key(1), jax.random.key(2))
    assert not np.allclose(train1, train2)  # another "pool" key, another draw
    np.testing.assert_array_equal(eval1, eval2)  # evaluation draws nothing
    with pytest.raises(ValueError, match=r"\['pool'\] rng stream.*rngs=\{'pool': key\}"):
        jax.eval_shape(lambda: module.apply(variables, x, train=True))
    vgg = zoo.create_linen("vgg11", num_classes=3, width=1 / 32, hidden=8)
    x32 = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
    shapes = jax.eval_shape(lambda x: vgg.init(jax.random.key(0), x), x32)
    with pytest.raises(ValueError, match=r"\['dropout'\] rng stream"):
        jax.eval_shape(lambda v, x: vgg.apply(v, x, train=True, rngs={"pool": jax.random.key(0)}),
                       shapes, x32)


def test_features_and_intermediates_are_the_nnx_models():
    module = zoo.create_linen("resnet20", num_classes=10, width=0.25)
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    variables = jax.eval_shape(lambda x: module.init(jax.random.key(0), x), x)
    maps = jax.eval_shape(lambda v, x: module.apply(v, x, method="forward_intermediates"),
                          variables, x)
    info = nnx.eval_shape(lambda: zoo.create("resnet20", num_classes=10, width=0.25))
    assert [m.shape for m in maps] == [(2, 32 // i["reduction"], 32 // i["reduction"],
                                        i["channels"]) for i in info.feature_info]
    feats = jax.eval_shape(lambda v, x: module.apply(v, x, method="forward_features"),
                           variables, x)
    assert feats.shape == maps[-1].shape
    last = jax.eval_shape(lambda v, x: module.apply(
        v, x, indices=[-1], method=module.forward_intermediates), variables, x)
    assert [m.shape for m in last] == [maps[-1].shape]


def test_bad_arguments_fail_before_tracing():
    with pytest.raises(ValueError, match="resnet18"):
        zoo.create_linen("resnet81", num_classes=10)
    with pytest.raises(ValueError, match="num_classes"):
        zoo.create_linen("resnet20", num_classes=0)
    with pytest.raises(TypeError, match="depth"):
        zoo.create_linen("lenet5", num_classes=10, depth=3)
    with pytest.raises(TypeError, match="rngs"):
        zoo.create_linen("lenet5", num_classes=10, rngs=nnx.Rngs(0))


def test_linen_entry_points_are_public_in_poolnets_models():
    import poolnets.models

    assert poolnets.models.create_linen is zoo.create_linen
    assert poolnets.models.load_torchvision_linen is zoo.load_torchvision_linen
