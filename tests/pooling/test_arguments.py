"""Argument checks shared by every public pool: the array argument (`as_array`), the PRNG
key of the random pools (`check_key`) and empty spatial dims of global/adaptive pools
(`check_spatial_nonempty`). Every error here is raised in plain Python before any JAX
work, so these tests compile nothing."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import poolnets.pooling as P
from poolnets.pooling.window_taps import uniform_noise

X = np.ones((1, 4, 4, 2), np.float32)
BOXES = np.zeros((1, 5), np.float32)

# Every public pool, called with `bad` in place of its array argument (named second).
ARRAY_ARGUMENT = {
    "adaptive_avg_pool": (lambda bad: P.adaptive_avg_pool(bad, (2, 2)), "x"),
    "adaptive_max_pool": (lambda bad: P.adaptive_max_pool(bad, (2, 2)), "x"),
    "avg_blur_pool": (lambda bad: P.avg_blur_pool(bad), "x"),
    "avg_pool": (lambda bad: P.avg_pool(bad, 2), "x"),
    "blur_pool": (lambda bad: P.blur_pool(bad), "x"),
    "conv_blur_pool": (lambda bad: P.conv_blur_pool(bad, np.ones((3, 3, 2, 2))), "x"),
    "fractional_max_pool": (lambda bad: P.fractional_max_pool(bad, (3, 3)), "x"),
    "gated_pool": (lambda bad: P.gated_pool(bad, (2, 2), gate_weights=np.ones((2, 2))), "x"),
    "gem_pool": (lambda bad: P.gem_pool(bad, (2, 2)), "x"),
    "global_avg_pool": (lambda bad: P.global_avg_pool(bad), "x"),
    "global_gem_pool": (lambda bad: P.global_gem_pool(bad), "x"),
    "global_lse_pool": (lambda bad: P.global_lse_pool(bad), "x"),
    "global_max_pool": (lambda bad: P.global_max_pool(bad), "x"),
    "global_soft_pool": (lambda bad: P.global_soft_pool(bad), "x"),
    "lip_pool": (lambda bad: P.lip_pool(bad, X, (2, 2)), "x"),
    "lp_pool": (lambda bad: P.lp_pool(bad, 2.0, 2), "x"),
    "lse_pool": (lambda bad: P.lse_pool(bad, (2, 2)), "x"),
    "max_blur_pool": (lambda bad: P.max_blur_pool(bad), "x"),
    "max_pool": (lambda bad: P.max_pool(bad, 2), "x"),
    "max_pool_with_indices": (lambda bad: P.max_pool_with_indices(bad, 2), "x"),
    "max_unpool": (lambda bad: P.max_unpool(bad, np.zeros((1, 2, 2, 2), np.int32), 2),
                   "values"),
    "median_pool": (lambda bad: P.median_pool(bad, (2, 2)), "x"),
    "min_pool": (lambda bad: P.min_pool(bad, 2), "x"),
    "mixed_pool": (lambda bad: P.mixed_pool(bad, (2, 2), alpha=0.5), "x"),
    "pool": (lambda bad: P.pool(bad, 0.0, jax.lax.add, 2), "x"),
    "roi_align": (lambda bad: P.roi_align(bad, BOXES, 2), "features"),
    "roi_pool": (lambda bad: P.roi_pool(bad, BOXES, 2), "features"),
    "soft_pool": (lambda bad: P.soft_pool(bad, (2, 2)), "x"),
    "spatial_pyramid_pool": (lambda bad: P.spatial_pyramid_pool(bad), "x"),
    "spectral_pool": (lambda bad: P.spectral_pool(bad, 2), "x"),
    "stochastic_pool": (lambda bad: P.stochastic_pool(bad, (2, 2)), "x"),
    "sum_pool": (lambda bad: P.sum_pool(bad, 2), "x"),
    "tree_pool": (lambda bad: P.tree_pool(bad, (2, 2), leaf_filters=np.ones((2, 2, 2)),
                                          gate_weights=np.ones((1, 2, 2))), "x"),
    "wavelet_pool": (lambda bad: P.wavelet_pool(bad), "x"),
}


def test_the_table_covers_every_public_pool():
    public = {name for name, obj in vars(P).items()
              if inspect.isfunction(obj) and not name.startswith("_")}
    assert public == set(ARRAY_ARGUMENT)


def _assert_names_array_argument(op, bad, kind):
    call, name = ARRAY_ARGUMENT[op]
    with pytest.raises(TypeError) as info:
        call(bad)
    message = str(info.value)
    assert message.startswith(f"{op}: {name} must be an array of numbers"), message
    assert f"got {name} of type" in message and kind in message, message


@pytest.mark.parametrize("op", sorted(ARRAY_ARGUMENT))
def test_none_or_string_array_argument_is_a_type_error_naming_it(op):
    _assert_names_array_argument(op, None, "NoneType")
    _assert_names_array_argument(op, "abc", "str")


@pytest.mark.parametrize("bad, kind", [([[1.0], [1.0, 2.0]], "list"),
                                       (np.array(["a"]), "ndarray with dtype <U1"),
                                       (jax.random.key(0), "with dtype key<fry>")],
                         ids=["ragged", "strings", "prng_key"])
def test_other_non_numeric_arrays_are_type_errors(bad, kind):
    # One op suffices: the check is the shared `geometry.as_array`.
    _assert_names_array_argument("max_pool", bad, kind)


def test_other_array_arguments_are_named_too():
    cases = [
        (lambda: P.roi_align(X, None, 2), "roi_align: boxes"),
        (lambda: P.max_unpool(X, "i", 2), "max_unpool: indices"),
        (lambda: P.lip_pool(X, None, (2, 2)), "lip_pool: logits"),
        (lambda: P.conv_blur_pool(X, None), "conv_blur_pool: kernel"),
    ]
    for call, words in cases:
        with pytest.raises(TypeError, match=words):
            call()


# --- PRNG keys: one key, new-style typed or legacy raw uint32 (2,) ------------------------

RANDOM_POOLS = {
    "stochastic_pool": lambda key: P.stochastic_pool(X, (2, 2), key=key),
    "fractional_max_pool": lambda key: P.fractional_max_pool(X, (3, 3), key=key),
    "uniform_noise": lambda key: uniform_noise(key, (3,)),  # mixed_random's draw
}


@pytest.mark.parametrize("key, error, words", [
    (0, TypeError, ["key=0", "int"]),
    (np.float32(1.5), TypeError, ["key=", "float32"]),
    ("seed", TypeError, ["key='seed'", "str"]),
    (jax.random.split(jax.random.key(0), 3), ValueError, ["single PRNG key", "(3,)"]),
    (np.zeros((3, 2), np.uint32), ValueError, ["key.shape=(3, 2)"]),
    (np.zeros((4,), np.uint32), ValueError, ["key.shape=(4,)"]),
], ids=["int", "float", "str", "typed_batch", "raw_batch", "raw_shape"])
@pytest.mark.parametrize("op", sorted(RANDOM_POOLS))
def test_bad_key_names_key_and_value(op, key, error, words):
    with pytest.raises(error) as info:
        RANDOM_POOLS[op](key)
    message = str(info.value)
    assert message.startswith(f"{op}: "), message
    for word in words:
        assert word in message, message


def test_both_key_styles_are_accepted():
    spec = jax.ShapeDtypeStruct(X.shape, jnp.float32)
    typed, raw = jax.random.key(0), jax.random.PRNGKey(0)
    for key in (typed, raw):
        out = jax.eval_shape(lambda a, k: P.stochastic_pool(a, (2, 2), key=k), spec, key)
        assert out.shape == (1, 2, 2, 2)
        out = jax.eval_shape(lambda a, k: P.fractional_max_pool(a, (3, 3), key=k), spec, key)
        assert out.shape == (1, 3, 3, 2)


# --- empty spatial dims: every global and adaptive pool raises (torch's adaptive pools do) -

EMPTY = np.zeros((2, 0, 3, 4), np.float32)


@pytest.mark.parametrize("call", [
    P.global_avg_pool, P.global_max_pool, P.global_gem_pool, P.global_lse_pool,
    P.global_soft_pool, P.spatial_pyramid_pool,
    lambda x: P.adaptive_avg_pool(x, (1, 1)), lambda x: P.adaptive_max_pool(x, (1, 1)),
], ids=["global_avg", "global_max", "global_gem", "global_lse", "global_soft", "spp",
        "adaptive_avg", "adaptive_max"])
def test_empty_spatial_dim_raises_naming_the_shape(call):
    with pytest.raises(ValueError, match=r"spatial dims of x must be non-empty; got "
                                         r"x.shape=\(2, 0, 3, 4\)"):
        call(EMPTY)


# --- symbolic batch dims (jax.export): argument checks never need their value ------------

def test_pools_trace_with_a_symbolic_batch():
    x = jax.ShapeDtypeStruct(jax.export.symbolic_shape("b, 4, 4, 2"), jnp.float32)
    key = jax.random.key(0)
    calls = [
        lambda a: P.max_pool(a, 2),  # window_geometry int()-ed every dim
        lambda a: P.gem_pool(a, (2, 2), p=np.full(2, 3.0, np.float32)),  # np.broadcast_shapes
        lambda a: P.mixed_pool(a, (2, 2), alpha=np.full(2, 0.5, np.float32)),
        lambda a: P.stochastic_pool(a, (2, 2), key=key),  # the noise size was int()-ed
        lambda a: P.fractional_max_pool(a, (3, 3), key=key),
    ]
    for call in calls:
        assert jax.eval_shape(call, x).shape[0] == x.shape[0]
