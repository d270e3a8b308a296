"""Downsample and head registries: names, errors, one-line registration, geometry wiring."""

import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import poolnets.pooling as pooling
from poolnets.models import create
from poolnets.nn import (
    downsample_names,
    head_names,
    register_downsample,
    register_head,
    registry,
    windowed,
)
from poolnets.nn.downsample import PoolGeometry, pooled_length
from poolnets.nn.heads import HeadSpec


@pytest.fixture
def scratch_names():
    added = []
    yield added
    for table, name in added:
        table.pop(name, None)


def test_builtin_names_are_listed_sorted():
    ds, heads = downsample_names(), head_names()
    assert {"max", "avg", "lp", "strided_conv", "none", "subsample"} <= set(ds)
    assert {"avg", "max", "avgmax", "catavgmax", "spp", "flatten"} <= set(heads)
    assert ds == sorted(ds) and heads == sorted(heads)


@pytest.mark.parametrize("kind", ["downsample", "head"])
def test_unknown_name_lists_the_choices(kind):
    with pytest.raises(ValueError, match="choices") as err:
        create("lenet5", num_classes=10, **{kind: "no_such_pool"})
    assert "no_such_pool" in str(err.value)
    names = downsample_names() if kind == "downsample" else head_names()
    assert all(repr(n) in str(err.value) for n in names)


def test_duplicate_and_bad_registration():
    with pytest.raises(ValueError, match="already registered"):
        register_downsample("max", windowed("max_pool"))
    with pytest.raises(ValueError, match="already registered"):
        register_head("avg", registry.global_pool("global_avg_pool"))
    with pytest.raises(TypeError, match="name"):
        register_downsample(3, windowed("max_pool"))


def test_one_line_registration_receives_each_models_geometry(monkeypatch, scratch_names):
    calls = []

    def spy_pool(x, window_shape, strides, padding, *, scale):
        calls.append((x.shape, window_shape, strides, padding))
        return fnn.max_pool(x, window_shape, strides, padding) * scale

    monkeypatch.setattr(pooling, "spy_pool", spy_pool, raising=False)
    register_downsample("spy", windowed("spy_pool", scale=1.0))
    scratch_names.append((registry._DOWNSAMPLE, "spy"))
    assert "spy" in downsample_names()

    def geometries(name, shape, **kw):
        calls.clear()
        model = create(name, num_classes=3, downsample="spy", **kw)
        jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(shape))
        return [c[1:] for c in calls]

    two = ((2, 2), (2, 2), ((0, 0), (0, 0)))
    assert geometries("lenet5", (1, 32, 32, 1)) == [two, two]
    assert geometries("vgg11", (1, 32, 32, 3), width=0.125) == [two] * 5
    stem = ((3, 3), (2, 2), ((1, 1), (1, 1)))
    assert geometries("resnet18", (1, 32, 32, 3), width=0.125) == [stem]
    # downsample_blocks: the stem plus main branch and shortcut of 3 stage transitions.
    assert geometries("resnet18", (1, 32, 32, 3), width=0.125, downsample_blocks=True) == (
        [stem] * 7
    )
    assert geometries("allcnn_c", (1, 32, 32, 3), width=0.125) == [stem] * 2
    one_d = geometries("lenet5", (1, 32, 1), spatial_dims=1)
    assert one_d == [((2,), (2,), ((0, 0),))] * 2


def test_random_pool_gets_a_pool_key_in_training_only(monkeypatch, scratch_names):
    seen = []

    def noisy_pool(x, window_shape, strides, padding, *, key):
        seen.append(key)
        out = fnn.avg_pool(x, window_shape, strides, padding)
        return out if key is None else out + jax.random.normal(key, out.shape)

    monkeypatch.setattr(pooling, "noisy_pool", noisy_pool, raising=False)
    register_downsample("noisy", windowed("noisy_pool", random=True))
    scratch_names.append((registry._DOWNSAMPLE, "noisy"))
    model = create("lenet5", num_classes=3, downsample="noisy")
    x = jnp.ones((2, 32, 32, 1))
    variables = jax.jit(model.init)(jax.random.key(0), x)
    assert all(k is None for k in seen)
    seen.clear()
    run = jax.jit(lambda k: model.apply(variables, x, train=True, rngs={"pool": k}))
    a, b, c = (run(jax.random.key(k)) for k in (1, 1, 2))
    assert all(k is not None for k in seen)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    with pytest.raises(Exception, match="pool"):
        model.apply(variables, x, train=True)


def test_decorated_head_registration(scratch_names):
    @register_head("first_pixel")
    def first_pixel(spec, name=None):
        class FirstPixel(fnn.Module):
            @fnn.compact
            def __call__(self, x, *, train=False):
                return x[(slice(None),) + (0,) * spec.spatial_dims]

        return FirstPixel(name=name)

    scratch_names.append((registry._HEADS, "first_pixel"))
    model = create("resnet20", num_classes=4, head="first_pixel", width=0.25)
    out = jax.eval_shape(model.init_with_output, jax.random.key(0), jnp.zeros((2, 8, 8, 3)))
    assert out[0].shape == (2, 4)


def test_every_downsample_follows_its_length_rule():
    rng = np.random.default_rng(0)
    for name in downsample_names():
        for trial in range(3):
            d = 1 + trial % 2
            window = tuple(int(w) for w in rng.integers(1, 4, d))
            strides = (2,) * d  # every downsampling point of the zoo has stride 2
            half = rng.integers(0, 2, d) * np.array(window) // 2
            padding = tuple((int(p), int(p)) for p in half)
            geo = PoolGeometry(window, strides, padding, features=3)
            x = jnp.asarray(rng.normal(size=(2, *rng.integers(4, 9, d), 3)), jnp.float32)
            layer = registry.make_downsample(name, geo, dtype=jnp.float32)
            rngs = {"params": jax.random.key(0), "pool": jax.random.key(1)}
            y, _ = jax.eval_shape(layer.init_with_output, rngs, x)
            rule = registry.check_downsample(name).output_length
            spatial = x.shape[1:-1]
            expect = [rule(*args) for args in zip(spatial, window, strides, padding, strict=True)]
            assert y.shape == (2, *expect, 3), (name, geo, x.shape)


def test_subsample_is_coefficient_times_mean_plus_bias():
    geo = PoolGeometry((2, 2), (2, 2), ((0, 0), (0, 0)), features=2)
    layer = registry.make_downsample("subsample", geo, dtype=jnp.float32)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(1, 4, 6, 2)), jnp.float32)
    params = {"params": {"coef": jnp.array([2.0, -1.0]), "bias": jnp.array([0.5, 0.0])}}
    y = layer.apply(params, x)
    xn = np.asarray(x)
    mean = xn.reshape(1, 2, 2, 3, 2, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(y, mean * [2.0, -1.0] + [0.5, 0.0], rtol=1e-6, atol=1e-6)


def test_strided_conv_is_a_same_width_conv_with_the_pool_geometry():
    geo = PoolGeometry((3, 3), (2, 2), ((1, 1), (1, 1)), features=5)
    layer = registry.make_downsample("strided_conv", geo, dtype=jnp.float32)
    x = jnp.ones((1, 7, 8, 5))
    y, variables = jax.jit(layer.init_with_output)(jax.random.key(0), x)
    assert variables["params"]["Conv_0"]["kernel"].shape == (3, 3, 5, 5)
    assert y.shape == (1, 4, 4, 5) and bool((y >= 0).all())


def test_heads_output_widths_and_values():
    x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 5, 6, 3)), jnp.float32)
    xn = np.asarray(x)
    widths = {"avg": 3, "max": 3, "avgmax": 3, "catavgmax": 6, "spp": 3 * 21, "flatten": 90}

    @jax.jit
    def all_heads(x):
        out = {n: registry.make_head(n, HeadSpec(2)).apply({}, x) for n in widths}
        # torchvision VGG's flatten: adaptive average to a fixed grid first (1x1 here = mean).
        out["flatten_1x1"] = registry.make_head("flatten", HeadSpec(2, (1, 1))).apply({}, x)
        return out

    out = all_heads(x)
    for name, width in widths.items():
        assert out[name].shape == (2, width), name
    mean, mx = xn.mean(axis=(1, 2)), xn.max(axis=(1, 2))
    np.testing.assert_allclose(out["avg"], mean, rtol=1e-5)
    np.testing.assert_allclose(out["max"], mx, rtol=1e-6)
    np.testing.assert_allclose(out["avgmax"], (mean + mx) / 2, rtol=1e-5)
    np.testing.assert_allclose(out["catavgmax"], np.concatenate([mean, mx], -1), rtol=1e-5)
    np.testing.assert_allclose(out["flatten"], xn.reshape(2, -1))
    np.testing.assert_allclose(out["flatten_1x1"], mean, rtol=1e-5)


def test_pooled_length_is_the_floor_rule():
    for n in range(1, 12):
        for w in range(1, 4):
            for s in range(1, 4):
                for p in range(0, w // 2 + 1):
                    brute = len(range(-p, n + p - w + 1, s))
                    got = pooled_length(n, w, s, (p, p))
                    assert got == brute if brute else got < 1, (n, w, s, p)
