"""The zoo's NNX models (`poolnets.models`): counts, options, outputs and the model contract.

Counts and shapes go through `nnx.eval_shape` (nothing is computed). Outputs are checked
against a stored fixture of the 0.1 Linen zoo (tests/models/fixtures/linen01_outputs.npz:
`poolnets.models.create(...).apply` at commit 083bcf5, the last with that zoo, given the
host-drawn variables of `host_variables`), loaded into each NNX model through the
Linen<->NNX path map at tiny widths; the 0.1 zoo was itself checked against torchvision
and the published counts. Option counts below are that zoo's, for the same reason.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from nnx_zoo_helpers import abstract, classes, concrete, host_variables, load_linen, param_count

from poolnets import models as zoo

X32 = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "linen01_outputs.npz")


# --- Counts (the published ones: test_counts.py) ----------------------------------------

def test_patterns_filter_the_names():
    assert zoo.list_models("resnet1*") == ["resnet101", "resnet110", "resnet152", "resnet18"]
    assert zoo.list_models("vgg*_bn") == [f"vgg{n}_bn" for n in (11, 13, 16, 19)]
    assert zoo.list_models() == sorted(zoo.list_models())


# Family x downsample x head (and the other options), with the 0.1 Linen zoo's parameter
# count for each: the architectures agree option by option.
OPTION_CASES = [
    ("lenet5", (1, 32, 32, 1), dict(downsample="gated", head="map", width=0.5), 5_090),
    ("lenet5", (1, 32, 32, 1), dict(downsample="lip", head="attention"), 19_802),
    ("lenet5", (1, 32, 1), dict(spatial_dims=1, downsample="tree", head="spp"), 25_118),
    ("lenet5_1998", (1, 32, 32, 1), dict(downsample="max", head="gem"), 14_727),
    ("resnet20", (1, 32, 32, 3), dict(downsample="mixed", head="catavgmax", width=0.5),
     68_374),
    ("resnet32", (1, 16, 16, 16, 3), dict(spatial_dims=3, downsample="gem", width=0.25),
     87_466),
    ("vgg11_bn", (1, 32, 32, 3), dict(downsample="strided_conv", head="avgmax", width=1 / 16),
     377_492),
    ("vgg13", (1, 64, 3), dict(spatial_dims=1, downsample="subsample", width=1 / 16), 393_036),
    ("resnet50", (1, 64, 64, 3), dict(downsample="gated", downsample_blocks=True,
                                      width=1 / 16), 224_555),
    ("resnet18", (1, 64, 64, 3), dict(downsample="avg", head="flatten", width=1 / 16),
     173_772),
    ("allcnn_c", (1, 32, 32, 3), dict(downsample="mixed", head="catavgmax", width=0.25),
     60_918),
    ("allcnn_c", (1, 32, 32, 3), dict(head="spp", class_map_relu=False, width=0.25), 88_808),
]


@pytest.mark.parametrize("name,shape,kw,count", OPTION_CASES, ids=lambda c: str(c))
def test_options_give_the_0_1_parameter_count(name, shape, kw, count):
    model = abstract(name, input_size=shape[1:-1], in_channels=shape[-1], **kw)
    assert param_count(model) == count
    out = nnx.eval_shape(lambda m, x: m(x), model, jax.ShapeDtypeStruct(shape, jnp.float32))
    assert out.shape == (1, classes(name)) and out.dtype == jnp.float32


@pytest.mark.parametrize("downsample", zoo.downsample_names())
def test_every_downsample_builds_and_runs_at_its_geometry(downsample):
    model = abstract("allcnn_c", width=0.05, downsample=downsample)
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    maps = nnx.eval_shape(lambda m, x: m.forward_intermediates(x), model, x)
    fractional = downsample == "fractional"  # sqrt(2) per point: 32 -> 23 -> 17
    expected = {"none": (32, 32, 30)}.get(downsample, (23, 17, 15) if fractional
                                          else (16, 8, 6))
    assert tuple(m.shape[1] for m in maps) == expected
    assert nnx.eval_shape(lambda m, x: m(x), model, x).shape == (2, 10)


def test_a_registered_downsample_is_built_at_every_point(monkeypatch):
    import poolnets.nnx as pnnx
    from poolnets.models.nnx import layers

    monkeypatch.setattr(layers, "_DOWNSAMPLE", dict(layers._DOWNSAMPLE))
    built = []

    @zoo.register_downsample("min_test")
    def make(point):
        built.append((point.window, point.stride, point.padding, point.features))
        return pnnx.MinPool(point.window_shape, point.strides, point.pads)

    assert "min_test" in zoo.downsample_names()
    abstract("vgg11", width=1 / 16, downsample="min_test")
    assert built == [(2, 2, 0, c) for c in (4, 8, 16, 32, 32)]
    with pytest.raises(ValueError, match="already registered"):
        zoo.register_downsample("min_test", make)


# --- Outputs: the 0.1 Linen zoo's, stored ----------------------------------------------------

PARITY_CASES = [
    ("lenet5", (2, 32, 32, 1), dict(width=0.5, downsample="gated", head="map")),
    ("lenet5_1998", (2, 32, 32, 1), {}),
    ("resnet20", (2, 16, 16, 3), dict(width=0.25, downsample="mixed", depth=8)),
    ("vgg11_bn", (2, 32, 32, 3), dict(width=1 / 32, hidden=16)),
    ("allcnn_c", (2, 16, 16, 3), dict(width=0.05, head="catavgmax")),
    ("resnet50", (2, 32, 32, 3), dict(width=1 / 16, downsample="avg", downsample_blocks=True,
                                      stage_sizes=(1, 1, 1, 1))),
]


def with_fixture_variables(name, shape, kw):
    """The fixture's input and the abstract model holding its host-drawn variables."""
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    model = nnx.eval_shape(lambda: zoo.create(name, num_classes=5, in_channels=shape[-1],
                                              input_size=shape[1:-1], **kw))
    load_linen(model, host_variables(model))
    return x, model


@pytest.mark.parametrize("index", range(len(PARITY_CASES)),
                         ids=[str(c) for c in PARITY_CASES])
def test_outputs_equal_the_0_1_zoo_given_its_weights(index):
    x, model = with_fixture_variables(*PARITY_CASES[index])
    graphdef, state = nnx.split(model)

    @jax.jit
    def run(state, x):
        m = nnx.merge(graphdef, state)
        return m(x), m.forward_head(m.forward_intermediates(x)[-1])

    ours, from_maps = run(state, x)
    with np.load(FIXTURE) as want:
        np.testing.assert_allclose(ours, want[f"logits{index}"], rtol=2e-5, atol=2e-5)
    # forward_intermediates' last map is forward_features' (the head gives the logits).
    np.testing.assert_allclose(from_maps, ours, rtol=1e-6, atol=1e-6)


def test_train_step_updates_batch_stats_as_the_0_1_zoo():
    x, model = with_fixture_variables("resnet20", (4, 8, 8, 3), dict(width=0.25, depth=8))
    graphdef, state = nnx.split(model)

    @jax.jit
    def train(state, x):
        m = nnx.merge(graphdef, state)
        return m(x, train=True), nnx.state(m, nnx.BatchStat)

    ours, stats = train(state, x)
    with np.load(FIXTURE) as fixture:
        want = {k: fixture[k] for k in fixture.files}
    np.testing.assert_allclose(ours, want["train_logits"], rtol=2e-5, atol=2e-5)
    flat = {"train_stats/" + "/".join(map(str, k)): v.get_value()
            for k, v in nnx.to_flat_state(stats)}
    assert flat.keys() == {k for k in want if k.startswith("train_stats/")}
    for key, value in flat.items():
        np.testing.assert_allclose(value, want[key], rtol=2e-5, atol=2e-6)
    before = {"train_stats/" + "/".join(map(str, k)): v.get_value() for k, v in
              nnx.to_flat_state(nnx.state(model, nnx.BatchStat))}
    assert any(not np.allclose(before[k], flat[k]) for k in flat)  # the step moved them


# --- The contract ---------------------------------------------------------------------------

# One per family, at an input large enough that VALID convolutions barely move the ratio
# of input to map length, which `reduction` (a cumulative stride) must then give.
CONTRACT_CASES = [
    ("lenet5", (1, 128, 128, 1), dict(head="avg")),
    ("resnet20", (1, 64, 64, 3), dict(width=0.25)),
    ("vgg11", (1, 64, 64, 3), dict(width=1 / 16)),
    ("allcnn_c", (1, 128, 128, 3), dict(width=0.1)),
    ("resnet18", (1, 64, 64, 3), dict(width=1 / 16)),
]


@pytest.mark.parametrize("name,shape,kw", CONTRACT_CASES, ids=lambda c: str(c))
def test_feature_info_describes_the_maps_forward_intermediates_returns(name, shape, kw):
    model = abstract(name, input_size=shape[1:-1], in_channels=shape[-1], **kw)
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    maps = nnx.eval_shape(lambda m, x: m.forward_intermediates(x), model, x)
    info = model.feature_info
    assert len(maps) == len(info) >= 3
    for entry, fmap in zip(info, maps, strict=True):
        assert fmap.shape[-1] == entry["channels"]
        assert entry["reduction"] == round(shape[1] / fmap.shape[1]), (entry, fmap.shape)
    feats = nnx.eval_shape(lambda m, x: m.forward_features(x), model, x)
    assert feats.shape == maps[-1].shape
    picked = nnx.eval_shape(lambda m, x: m.forward_intermediates(x, indices=[0, -1]), model, x)
    assert [p.shape for p in picked] == [maps[0].shape, maps[-1].shape]
    last2 = nnx.eval_shape(lambda m, x: m.forward_intermediates(x, indices=2), model, x)
    assert [p.shape for p in last2] == [m.shape for m in maps[-2:]]
    pre = nnx.eval_shape(lambda m, x: m.forward_head(m.forward_features(x), pre_logits=True),
                         model, x)
    assert pre.ndim == 2
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == shape[1:] and cfg["num_classes"] == classes(name)
    assert len(cfg["mean"]) == len(cfg["std"]) == shape[-1]
    assert set(cfg) == {"input_size", "mean", "std", "crop_pct", "interpolation",
                        "num_classes", "source"}


def test_forward_intermediates_rejects_bad_indices():
    model = abstract("resnet20", width=0.25)
    x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
    for bad in (0, 5, [4], [-5]):
        with pytest.raises(ValueError, match="indices"):
            model.forward_intermediates(x, indices=bad)


def test_pretrained_cfg_names_the_torchvision_weights():
    assert abstract("resnet50", width=1 / 16).pretrained_cfg["source"] == (
        "torchvision.models.resnet50(weights='IMAGENET1K_V1')")
    assert abstract("vgg16_bn", width=1 / 16).pretrained_cfg["crop_pct"] == 0.875
    assert abstract("resnet20").pretrained_cfg["source"] is None


@pytest.mark.parametrize("name,kw", [("lenet5", {}), ("vgg11", dict(width=1 / 16)),
                                     ("allcnn_c", dict(width=0.05, head="spp"))])
def test_reset_classifier_changes_the_number_of_classes(name, kw):
    model = abstract(name, num_classes=10, input_size=32, **kw)
    before = param_count(model)

    def reset(m):
        m.reset_classifier(3)
        return m

    model = nnx.eval_shape(reset, model)  # the new layer's weights, abstractly
    x = jax.ShapeDtypeStruct((2, 32, 32, 1 if "lenet" in name else 3), jnp.float32)
    assert nnx.eval_shape(lambda m, x: m(x), model, x).shape == (2, 3)
    assert model.pretrained_cfg["num_classes"] == 3
    assert param_count(model) < before


def test_bfloat16_computes_in_bfloat16_with_float32_parameters():
    model = abstract("resnet20", width=0.25, dtype=jnp.bfloat16)
    params = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert {v.dtype for v in params} == {np.dtype(np.float32)}
    out = nnx.eval_shape(lambda m, x: m(x), model, jax.ShapeDtypeStruct((1, 32, 32, 3),
                                                                         jnp.float32))
    assert out.dtype == jnp.bfloat16


def test_symbolic_batch_dim_is_accepted():
    model = abstract("lenet5")
    (b,) = jax.export.symbolic_shape("b")
    out = nnx.eval_shape(lambda m, x: m(x), model, jax.ShapeDtypeStruct((b, 32, 32, 1),
                                                                         jnp.float32))
    assert out.shape == (b, 10)


# --- Concrete models: split/merge, jit, grad, modes, seeds ------------------------------------
# Flax's initialisers and the first eager call compile op by op (seconds here), so concrete
# models are built abstractly and given host-drawn values (`concrete`), and run under jit.

def small_lenet(**kw) -> zoo.ZooModel:
    return concrete(abstract("lenet5", num_classes=3, width=0.5, **kw))


def test_split_merge_jit_and_grad_over_the_param_state():
    model = small_lenet()
    x = jnp.asarray(X32[..., :1])
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    merged = nnx.merge(graphdef, params, rest)
    assert jax.tree.all(jax.tree.map(jnp.array_equal, nnx.state(merged), nnx.state(model)))

    @jax.jit
    def loss_and_grad(params, rest, x):
        def loss(p):
            return jnp.mean(nnx.merge(graphdef, p, rest)(x) ** 2)

        return jax.value_and_grad(loss)(params)

    value, grads = loss_and_grad(params, rest, x)
    assert np.isfinite(value) and value > 0
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    assert all(bool(jnp.any(g != 0)) for g in jax.tree.leaves(grads))


def test_orbax_round_trip_nnx_grad_and_vmap(tmp_path):
    import orbax.checkpoint as ocp

    model = small_lenet()
    x = jnp.asarray(X32[..., :1])
    _, state = nnx.split(model)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(tmp_path / "model", nnx.to_pure_dict(state))
    with ocp.StandardCheckpointer() as checkpointer:
        restored = checkpointer.restore(tmp_path / "model")
    fresh = nnx.eval_shape(lambda: zoo.create("lenet5", num_classes=3, width=0.5))
    graphdef, abstract_state = nnx.split(fresh)
    nnx.replace_by_pure_dict(abstract_state, restored)
    again = nnx.merge(graphdef, abstract_state)
    assert jax.tree.all(jax.tree.map(jnp.array_equal, nnx.state(again), nnx.state(model)))

    @nnx.jit
    def grads_and_vmapped(m, x):
        grads = nnx.grad(lambda m: jnp.mean(m(x) ** 2))(m)
        singles = jax.vmap(m)(x[:, None])  # each image as its own batch of one
        return grads, singles, m(x)

    grads, singles, direct = grads_and_vmapped(again, x)
    assert all(bool(jnp.any(g != 0)) for g in jax.tree.leaves(grads))
    np.testing.assert_allclose(singles[:, 0], direct, rtol=1e-5, atol=1e-6)


def test_same_seed_same_model_and_another_seed_another():
    # rngs=None is nnx.Rngs(0), i.e. the key of seed 0.
    @jax.jit
    def params(key):
        model = zoo.create("lenet5", num_classes=3, width=0.5, rngs=nnx.Rngs(key))
        return nnx.state(model, nnx.Param)

    a, b, c = (params(jax.random.key(seed)) for seed in (0, 0, 1))
    assert jax.tree.all(jax.tree.map(jnp.array_equal, a, b))
    assert not np.array_equal(a["C1"]["kernel"].get_value(), c["C1"]["kernel"].get_value())


@pytest.mark.parametrize("downsample", ["stochastic", "fractional", "mixed_random"])
def test_random_downsamples_follow_the_mode(downsample):
    model = small_lenet(downsample=downsample, head="avg")
    graphdef, state = nnx.split(model)
    x = jnp.asarray(np.abs(X32[..., :1]))

    @jax.jit
    def calls(state):
        m = nnx.merge(graphdef, state)
        evals = m(x), m(x), m(x, train=False)  # created in evaluation mode
        trains = m(x, train=True), m(x, train=True)
        m.train()
        trains += m(x), m(x)
        m.eval()
        return evals, trains

    evals, trains = calls(state)
    assert all(np.array_equal(evals[0], e) for e in evals[1:])
    assert not any(np.array_equal(a, b) for i, a in enumerate(trains) for b in trains[i + 1:])


# --- Bad input ------------------------------------------------------------------------------

def test_channels_first_input_is_rejected_naming_the_layout():
    model = abstract("resnet20", width=0.25)
    with pytest.raises(ValueError, match=r"channels-last \(N, H, W, C\) with C=3.*"
                                         r"\(2, 3, 32, 32\).*channels-first"):
        model(jnp.zeros((2, 3, 32, 32)))


def test_too_small_input_names_the_minimum_size():
    model = abstract("vgg11", width=1 / 16)
    with pytest.raises(ValueError, match="minimum is 32"):
        model(jnp.zeros((1, 31, 40, 3)))
    with pytest.raises(ValueError, match="minimum is 9"):
        abstract("allcnn_c", width=0.1)(jnp.zeros((1, 8, 8, 3)))


@pytest.mark.parametrize("downsample,minimum", [("max", 32), ("blur", 17), ("max_blur", 48)])
def test_minimum_input_size_comes_from_each_layers_own_length_rule(downsample, minimum):
    # Five stride-2 points: 2x2 windows need 2 per dim before each (32); the blur's reflect
    # padding needs 2 and gives ceil(n / 2) (17 -> 9 -> 5 -> 3 -> 2 -> 1); max_blur's
    # stride-1 max must leave 2 (48 -> 24 -> 12 -> 6 -> 3 -> 1, but 47 ends at 2 -> 1 <2).
    model = abstract("vgg11", width=1 / 16, downsample=downsample)
    assert model.min_input_size() == minimum


def test_flatten_head_at_another_size_names_its_input_size():
    model = abstract("lenet5", input_size=32)
    with pytest.raises(ValueError, match=r"input_size=\(32, 32\)"):
        model(jnp.zeros((1, 28, 28, 1)))
    same_map = jax.ShapeDtypeStruct((1, 33, 33, 1), jnp.float32)  # the same 5x5 final map
    assert nnx.eval_shape(lambda m, x: m(x), model, same_map).shape == (1, 10)


def test_unknown_names_list_the_choices_with_the_closest():
    with pytest.raises(ValueError, match="did you mean 'resnet50'"):
        zoo.create("resnet-50", num_classes=10)
    with pytest.raises(ValueError, match="did you mean 'max_blur'.*Choices"):
        zoo.create("lenet5", num_classes=10, downsample="maxblur")
    with pytest.raises(ValueError, match="did you mean 'catavgmax'"):
        zoo.create("lenet5", num_classes=10, head="cat_avgmax")
    with pytest.raises(TypeError, match="did you mean 'width'"):
        zoo.create("lenet5", num_classes=10, widht=2)
    with pytest.raises(ValueError, match="num_classes"):
        zoo.create("lenet5", num_classes=0)
    with pytest.raises(ValueError, match="dtype"):
        zoo.create("lenet5", num_classes=10, dtype=jnp.int32)
