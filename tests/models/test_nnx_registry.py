"""The NNX zoo's downsample and head registries (`poolnets.models.nnx.layers`): names,
errors, one-line registration and the geometry each model hands it, the random pools'
"pool" stream, every layer's length rule, and the model-only layers against NumPy.

Models are built abstractly (`nnx.eval_shape`); the few numeric checks run one jit each.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import poolnets.nnx as pnnx
from poolnets.models import nnx as zoo
from poolnets.models.nnx import layers
from poolnets.models.nnx.layers import HeadSite, Point

# LLVM level 0 only shortens the compiles.
quick_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


@pytest.fixture
def scratch_tables(monkeypatch):
    """Registrations made by a test go to copies of the tables, dropped afterwards."""
    monkeypatch.setattr(layers, "_DOWNSAMPLE", dict(layers._DOWNSAMPLE))
    monkeypatch.setattr(layers, "_HEADS", dict(layers._HEADS))


def abstract(name, **kw):
    kw.setdefault("num_classes", 3)
    return nnx.eval_shape(lambda: zoo.create(name, **kw))


def test_builtin_names_are_listed_sorted():
    ds, heads = zoo.downsample_names(), zoo.head_names()
    assert {"max", "avg", "lp", "strided_conv", "none", "subsample", "stochastic",
            "fractional", "mixed_random", "wavelet"} <= set(ds)
    assert {"avg", "max", "avgmax", "catavgmax", "spp", "flatten", "attention", "map"} <= set(
        heads)
    assert ds == sorted(ds) and heads == sorted(heads)


@pytest.mark.parametrize("check, names", [(layers.check_downsample, zoo.downsample_names),
                                          (layers.check_head, zoo.head_names)])
def test_unknown_name_lists_every_choice(check, names):
    for bad in ("no_such_pool", 3, None):
        with pytest.raises(ValueError, match="Choices") as err:
            check(bad)
        assert repr(bad) in str(err.value)
        assert all(repr(n) in str(err.value) for n in names())


def test_duplicate_and_bad_registration(scratch_tables):
    def builder(point):
        return pnnx.MaxPool(point.window_shape, point.strides, point.pads)

    before = zoo.downsample_names(), zoo.head_names()
    with pytest.raises(ValueError, match="downsample 'max' is already registered"):
        zoo.register_downsample("max", builder)
    with pytest.raises(ValueError, match="head 'avg' is already registered"):
        zoo.register_head("avg", lambda site: pnnx.GlobalAvgPool())
    with pytest.raises(TypeError, match="name must be a non-empty str, got 3"):
        zoo.register_downsample(3, builder)
    with pytest.raises(TypeError, match="name must be a non-empty str, got ''"):
        zoo.register_head("")(lambda site: pnnx.GlobalAvgPool())
    assert (zoo.downsample_names(), zoo.head_names()) == before
    assert layers.make_downsample("max", Point(2, 2, 0, 2, 3)).__class__ is pnnx.MaxPool


def test_one_line_registration_receives_each_models_geometry(scratch_tables):
    points = []

    @zoo.register_downsample("spy")
    def spy(point):
        points.append((point.window, point.stride, point.padding, point.spatial_dims))
        return pnnx.MaxPool(point.window_shape, point.strides, point.pads)

    def geometries(name, **kw):
        points.clear()
        abstract(name, downsample="spy", **kw)
        return list(points)

    two, stem = (2, 2, 0, 2), (3, 2, 1, 2)
    assert "spy" in zoo.downsample_names()
    assert geometries("lenet5") == [two, two]
    assert geometries("lenet5", spatial_dims=1) == [(2, 2, 0, 1)] * 2
    assert geometries("vgg11", width=1 / 16) == [two] * 5
    assert geometries("resnet18", width=1 / 16) == [stem]
    # downsample_blocks: the stem, then main branch and shortcut of 3 stage transitions.
    assert geometries("resnet18", width=1 / 16, downsample_blocks=True) == [stem] * 7
    assert geometries("allcnn_c", width=0.1) == [stem] * 2


def test_decorated_head_registration_receives_the_head_site(scratch_tables):
    sites = []

    class FirstPosition(nnx.Module):
        def __call__(self, x):
            return x[(slice(None),) + (0,) * (x.ndim - 2)]

        def output_shape(self, shape):
            return (shape[0], shape[-1])

    @zoo.register_head("first_position")
    def first_position(site):
        sites.append((site.features, site.spatial))
        return FirstPosition()

    model = abstract("resnet20", num_classes=4, head="first_position", width=0.25,
                     input_size=8)
    assert sites == [(16, (2, 2))]  # 16 channels at stride 4
    x = jax.ShapeDtypeStruct((2, 8, 8, 3), jnp.float32)
    assert nnx.eval_shape(lambda m, x: m(x), model, x).shape == (2, 4)
    assert model.fc.kernel.shape == (16, 4)


def test_a_registered_random_pool_uses_the_pool_stream_in_training_only(scratch_tables):
    zoo.register_downsample("stochastic_again", lambda p: pnnx.StochasticPool(
        p.window_shape, p.strides, p.pads, rngs=p.rngs))
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 32, 32, 1)), jnp.float32)

    @quick_jit
    def outputs(pool_key):  # the weights from "params" 0 every time
        model = zoo.create("lenet5", num_classes=3, width=0.5, head="avg",
                           downsample="stochastic_again",
                           rngs=nnx.Rngs(params=0, pool=pool_key))
        return model(x), model(x, train=True)

    (eval1, train1), (eval1b, train1b), (eval2, train2) = (
        outputs(jax.random.key(k)) for k in (1, 1, 2))
    np.testing.assert_array_equal(eval1, eval2)  # evaluation draws nothing
    np.testing.assert_array_equal(train1, train1b)  # the same pool key, the same draw
    assert not np.allclose(train1, train2)  # another pool key, another draw
    assert not np.allclose(eval1, train1)


def traced_spatial(layer, shape):
    out = nnx.eval_shape(lambda m, x: m(x), layer, jax.ShapeDtypeStruct(shape, jnp.float32))
    return out.shape[1:-1]


def test_every_downsample_follows_its_length_rule():
    """Each layer's `output_spatial` (which models derive their sizes from) is the spatial
    shape it returns, at points of every window 1-3, padding up to half of it, stride 2
    (the zoo's downsampling points), 1 and 2 spatial dims."""
    rng = np.random.default_rng(0)
    for name in zoo.downsample_names():
        for trial in range(3):
            window = int(rng.integers(1, 4))
            point = Point(window, 2, int(rng.integers(0, window // 2 + 1)), 1 + trial % 2, 3)
            layer = nnx.eval_shape(lambda n=name, p=point: layers.make_downsample(
                n, dataclasses.replace(p, rngs=nnx.Rngs(0))))
            spatial = tuple(int(n) for n in rng.integers(4, 9, point.spatial_dims))
            assert layer.output_spatial(spatial) == traced_spatial(layer, (2, *spatial, 3)), (
                name, point, spatial)


def test_wavelet_needs_a_power_of_two_stride():
    assert traced_spatial(layers.make_downsample("wavelet", Point(2, 4, 0, 2, 3)),
                          (1, 8, 8, 3)) == (2, 2)  # two Haar levels
    with pytest.raises(ValueError, match="power-of-two stride >= 2; this point has stride 3"):
        layers.make_downsample("wavelet", Point(3, 3, 0, 2, 3))


def test_subsample_is_coefficient_times_mean_plus_bias():
    layer = layers.make_downsample("subsample", Point(2, 2, 0, 2, 2))
    assert (layer.coef[...].tolist(), layer.bias[...].tolist()) == ([1.0, 1.0], [0.0, 0.0])
    layer.coef.set_value(jnp.array([2.0, -1.0]))
    layer.bias.set_value(jnp.array([0.5, 0.0]))
    x = np.random.default_rng(1).normal(size=(1, 4, 6, 2)).astype(np.float32)
    mean = x.reshape(1, 2, 2, 3, 2, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(quick_jit(layer)(x), mean * [2.0, -1.0] + [0.5, 0.0],
                               rtol=1e-6, atol=1e-6)


def test_strided_conv_is_a_same_width_relu_conv_with_the_point_geometry():
    rng = np.random.default_rng(2)
    layer = nnx.eval_shape(lambda: layers.make_downsample(
        "strided_conv", Point(3, 2, 1, 2, 5, rngs=nnx.Rngs(0))))
    assert layer.conv.kernel.shape == (3, 3, 5, 5) and layer.conv.bias.shape == (5,)
    kernel = rng.normal(size=(3, 3, 5, 5)).astype(np.float32)
    bias = rng.normal(size=5).astype(np.float32)
    layer.conv.kernel.set_value(jnp.asarray(kernel))
    layer.conv.bias.set_value(jnp.asarray(bias))
    x = rng.normal(size=(1, 7, 8, 5)).astype(np.float32)
    padded = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    want = sum(np.einsum("nhwc,cd->nhwd", padded[:, i:i + 7:2, j:j + 8:2], kernel[i, j])
               for i in range(3) for j in range(3)) + bias
    assert layer.output_spatial((7, 8)) == (4, 4)
    np.testing.assert_allclose(quick_jit(layer)(x), np.maximum(want, 0.0), rtol=1e-5,
                               atol=1e-5)


def test_heads_output_widths_and_values():
    x = np.random.default_rng(3).normal(size=(2, 5, 6, 3)).astype(np.float32)
    heads = {name: nnx.eval_shape(lambda n=name: layers.make_head(
        n, HeadSite(3, (5, 6), rngs=nnx.Rngs(0)))) for name in zoo.head_names()}
    widths = {"catavgmax": 6, "spp": 3 * (1 + 4 + 16), "flatten": 5 * 6 * 3}
    for name, head in heads.items():
        want = (2, widths.get(name, 3))
        assert head.output_shape(x.shape) == want, name
        assert nnx.eval_shape(lambda h, v: h(v), head, x).shape == want, name
    # torchvision VGG's flatten: an adaptive average to a fixed grid first (1 x 1: the mean).
    grid = layers.make_head("flatten", HeadSite(3, (5, 6), flatten_grid=(1, 1)))
    parameter_free = ("avg", "max", "avgmax", "catavgmax", "flatten", "lse", "soft")
    out = quick_jit(lambda v: [heads[n](v) for n in parameter_free] + [grid(v)])(x)
    out = dict(zip([*parameter_free, "flatten_1x1"], out, strict=True))
    xd = x.astype(np.float64)
    mean, top = xd.mean(axis=(1, 2)), xd.max(axis=(1, 2))
    np.testing.assert_allclose(out["avg"], mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["max"], top, rtol=1e-6)
    np.testing.assert_allclose(out["avgmax"], (mean + top) / 2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["catavgmax"], np.concatenate([mean, top], -1), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(out["flatten"], x.reshape(2, -1))
    np.testing.assert_allclose(out["flatten_1x1"], mean, rtol=1e-5, atol=1e-6)
    flat = xd.reshape(2, -1, 3)
    lse = np.log(np.exp(flat).mean(axis=1))  # r = 1: log of the mean of exp
    np.testing.assert_allclose(out["lse"], lse, rtol=1e-5, atol=1e-6)
    weights = np.exp(flat) / np.exp(flat).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out["soft"], (weights * flat).sum(axis=1), rtol=1e-5, atol=1e-6)


def test_conv_length_is_the_floor_rule():
    """`conv_spatial`, the zoo's length rule for its convolutions (strided_conv, stems),
    against counting the window positions that fit in the padded input."""
    for w in range(1, 4):
        for s in range(1, 4):
            for p in range(w // 2 + 1):
                conv = nnx.eval_shape(lambda w=w, s=s, p=p: nnx.Conv(
                    1, 1, (w,), (s,), padding=((p, p),), rngs=nnx.Rngs(0)))
                for n in range(1, 12):
                    fits = len(range(-p, n + p - w + 1, s))
                    got = layers.conv_spatial(conv, (n,))[0]
                    assert got == fits if fits else got < 1, (n, w, s, p)
