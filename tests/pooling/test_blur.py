"""Anti-aliased pools (poolnets.pooling.blur) against brute-force NumPy loops and the
published antialiased-cnns BlurPool (fixtures from tools/make_torchvision_fixtures_roi.py)."""

from __future__ import annotations

import itertools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from poolnets.pooling.blur import (
    avg_blur_pool,
    binomial_filter,
    blur_kernel,
    blur_pool,
    conv_blur_pool,
    max_blur_pool,
)

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def pascal_row(size: int) -> np.ndarray:
    row = np.array([1.0])
    for _ in range(size - 1):
        row = np.convolve(row, [1.0, 1.0])
    return row


def source_index(i: int, length: int, mode: str) -> int | None:
    """Input index read at padded position i (None: a zero)."""
    if 0 <= i < length:
        return i
    if mode == "zero":
        return None
    if mode == "replicate":
        return min(max(i, 0), length - 1)
    return -i if i < 0 else 2 * (length - 1) - i  # reflect without repeating the edge


def blur_reference(x: np.ndarray, sizes, strides, mode: str) -> np.ndarray:
    """Explicit loops: `(B, *spatial, C)` float64."""
    n = len(sizes)
    spatial = x.shape[1:-1]
    kernel = np.ones(())
    for f in sizes:
        kernel = np.multiply.outer(kernel, pascal_row(f) / 2 ** (f - 1))
    out_shape = [-(-length // s) for length, s in zip(spatial, strides, strict=True)]
    y = np.zeros((x.shape[0], *out_shape, x.shape[-1]))
    for o in itertools.product(*(range(m) for m in out_shape)):
        for t in itertools.product(*(range(f) for f in sizes)):
            src = [source_index(o[d] * strides[d] + t[d] - (sizes[d] - 1) // 2, spatial[d], mode)
                   for d in range(n)]
            if None in src:
                continue
            y[(slice(None), *o)] += kernel[t] * x[(slice(None), *src)]
    return y


def window_reference(x: np.ndarray, window, reduce) -> np.ndarray:
    """Stride-1 VALID window reduction, `(B, *spatial, C)`."""
    spatial = x.shape[1:-1]
    out_shape = [length - k + 1 for length, k in zip(spatial, window, strict=True)]
    y = np.zeros((x.shape[0], *out_shape, x.shape[-1]))
    for o in itertools.product(*(range(m) for m in out_shape)):
        block = x[(slice(None), *(slice(a, a + k) for a, k in zip(o, window, strict=True)))]
        y[(slice(None), *o)] = reduce(block.reshape(x.shape[0], -1, x.shape[-1]), axis=1)
    return y


@pytest.mark.parametrize("size", range(1, 8))
def test_filters_are_normalised_binomial_rows(size):
    taps = binomial_filter(size)
    np.testing.assert_allclose(taps, pascal_row(size) / pascal_row(size).sum(), rtol=0, atol=0)
    assert taps.sum() == pytest.approx(1.0, abs=1e-15)
    kernel = blur_kernel((size, 3))
    assert kernel.shape == (size, 3)
    np.testing.assert_allclose(kernel, np.outer(taps, [0.25, 0.5, 0.25]), atol=1e-15)
    assert kernel.sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("mode", ["reflect", "replicate"])
def test_constant_stays_constant(mode):
    for shape, size in [((2, 9, 3), 7), ((1, 6, 7, 2), 4), ((2, 4, 5, 6, 1), 3)]:
        x = jnp.full(shape, 2.5, jnp.float32)
        y = blur_pool(x, filter_size=size, stride=2, pad_mode=mode)
        np.testing.assert_allclose(np.asarray(y), 2.5, rtol=1e-6)


def test_matches_brute_force_random_configs():
    rng = np.random.default_rng(0)
    for n, trial in itertools.product((1, 2, 3), range(6)):
        spatial = tuple(int(v) for v in rng.integers(4, 9 if n < 3 else 6, size=n))
        sizes = tuple(int(v) for v in rng.integers(1, 8, size=n))
        strides = tuple(int(v) for v in rng.integers(1, 4, size=n))
        mode = ["reflect", "replicate", "zero"][trial % 3]
        if mode == "reflect":  # reflect padding must be shorter than the input
            sizes = tuple(min(f, 2 * length - 1) for f, length in zip(sizes, spatial, strict=True))
        x = rng.normal(size=(2, *spatial, 3)).astype(np.float32)
        got = blur_pool(x, filter_size=sizes, stride=strides, pad_mode=mode)
        want = blur_reference(x.astype(np.float64), sizes, strides, mode)
        np.testing.assert_allclose(np.asarray(got), want, atol=2e-6, err_msg=str((sizes, strides)))


def test_matches_published_antialiased_cnns():
    data = np.load(FIXTURES / "antialiased_blur.npz")
    # every filter size with the default mode; the other modes on a few sizes (compile time)
    configs = [("reflect", size, 2) for size in range(1, 8)]
    configs += [(mode, size, 3) for mode in ("replicate", "zero") for size in (2, 5, 7)]
    configs += [("reflect", 6, 3)]
    for mode, size, stride in configs:
        key = f"{mode}_{size}_{stride}"
        got2 = blur_pool(data["x2"], filter_size=size, stride=stride, pad_mode=mode)
        got1 = blur_pool(data["x1"], filter_size=size, stride=stride, pad_mode=mode)
        np.testing.assert_allclose(np.asarray(got2), data[f"blur2d_{key}"], atol=1e-6, err_msg=key)
        np.testing.assert_allclose(np.asarray(got1), data[f"blur1d_{key}"], atol=1e-6, err_msg=key)


def test_output_length_is_ceil():
    for length, stride, size in itertools.product(range(4, 10), (1, 2, 3, 4), (1, 4, 7)):
        y = jax.eval_shape(lambda v, f=size, s=stride: blur_pool(v, filter_size=f, stride=s),
                           jax.ShapeDtypeStruct((1, length, 1), jnp.float32))
        assert y.shape == (1, -(-length // stride), 1)


def test_batch_and_unbatched_layouts():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 7, 6, 4)).astype(np.float32)
    multi = blur_pool(x, filter_size=(3, 4), stride=2)  # tuple -> 2 spatial dims
    single = blur_pool(x[0, 1], filter_size=3, stride=2, spatial_dims=2)
    assert multi.shape == (2, 3, 4, 3, 4)
    want = blur_pool(x[0, 1], filter_size=(3, 4), stride=2)
    np.testing.assert_array_equal(np.asarray(multi[0, 1]), np.asarray(want))
    assert single.shape == (4, 3, 4)


def test_max_blur_matches_composition_and_strided_length():
    rng = np.random.default_rng(2)
    for n in (1, 2, 3):
        spatial = tuple(int(v) for v in rng.integers(5, 8, size=n))
        window = tuple(int(v) for v in rng.integers(1, 4, size=n))
        x = rng.normal(size=(2, *spatial, 2)).astype(np.float32)
        got = max_blur_pool(x, window, filter_size=4, stride=2, pad_mode="replicate")
        dense = window_reference(x.astype(np.float64), window, np.max)
        want = blur_reference(dense, (4,) * n, (2,) * n, "replicate")
        np.testing.assert_allclose(np.asarray(got), want, atol=2e-6)
        strided = [(length - k) // 2 + 1 for length, k in zip(spatial, window, strict=True)]
        assert got.shape[1:-1] == tuple(strided)
    # padding belongs to the max stage: 3x3/2 pad 1 keeps the strided pool's length
    y = max_blur_pool(jnp.zeros((1, 9, 8, 1)), 3, padding=1)
    assert y.shape == (1, 5, 4, 1)


def test_avg_blur_matches_composition_and_binomial_identity():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 8, 7, 3)).astype(np.float32)
    got = avg_blur_pool(x, (2, 3), filter_size=3, stride=2)
    dense = window_reference(x.astype(np.float64), (2, 3), np.mean)
    np.testing.assert_allclose(np.asarray(got), blur_reference(dense, (3, 3), (2, 2), "reflect"),
                               atol=2e-6)
    # box(2) * binomial(f) = binomial(f + 1): away from the borders, for odd f (same
    # low padding (f - 1) // 2 on both sides) the taps line up for any stride
    x1 = rng.normal(size=(1, 21, 1)).astype(np.float32)
    for f, s in ((1, 1), (3, 2), (5, 3)):
        a = np.asarray(avg_blur_pool(x1, 2, filter_size=f, stride=s, pad_mode="zero"))
        b = np.asarray(blur_pool(x1, filter_size=f + 1, stride=s, pad_mode="zero"))
        inner = slice(f, (20 - f) // s)
        np.testing.assert_allclose(a[:, inner], b[:, inner], atol=1e-6)


def test_conv_blur_matches_conv_then_blur():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 6, 5, 3)).astype(np.float32)
    kernel = rng.normal(size=(3, 3, 3, 4)).astype(np.float32)
    bias = rng.normal(size=(4,)).astype(np.float32)
    got = conv_blur_pool(x, kernel, bias, padding=1, activation=jax.nn.relu)
    xp = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    conv = np.zeros((2, 6, 5, 4))
    for i, j in itertools.product(range(6), range(5)):
        conv[:, i, j] = np.einsum("bhwc,hwcd->bd", xp[:, i:i + 3, j:j + 3], kernel) + bias
    want = blur_reference(np.maximum(conv, 0), (3, 3), (2, 2), "reflect")
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)
    assert conv_blur_pool(x, kernel[:1, :1], padding="VALID").shape == (2, 3, 3, 4)


def test_jit_vmap_and_adjoint_gradient():
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.normal(size=(3, 7, 6, 2)), jnp.float32)
    fn = lambda v: blur_pool(v, filter_size=4, stride=(2, 3))  # noqa: E731
    eager = fn(x)
    np.testing.assert_allclose(np.asarray(jax.jit(fn)(x)), np.asarray(eager), atol=1e-6)
    per_item = jax.vmap(lambda v: blur_pool(v, filter_size=4, stride=(2, 3)))(x[:, None])
    np.testing.assert_allclose(np.asarray(per_item[:, 0]), np.asarray(eager), atol=1e-6)
    # blur is linear: <A x, c> == <x, A^T c> with A^T c from reverse-mode autodiff
    c = jnp.asarray(rng.normal(size=eager.shape), jnp.float32)
    grad = jax.grad(lambda v: jnp.sum(fn(v) * c))(x)
    assert float(jnp.sum(eager * c)) == pytest.approx(float(jnp.sum(x * grad)), rel=1e-5)
    # max-blur: every output's filter sums to 1 and each max routes its gradient to one
    # input, so the input gradient of sum(y) sums to y.size
    g = jax.jit(jax.grad(lambda v: jnp.sum(max_blur_pool(v, 2))))(x)
    assert np.isfinite(np.asarray(g)).all()
    assert float(jnp.sum(g)) == pytest.approx(float(max_blur_pool(x, 2).size), rel=1e-5)


def test_half_precision_dtypes():
    x = jnp.asarray(np.random.default_rng(6).normal(size=(2, 8, 8, 3)), jnp.float32)
    ref = blur_pool(x)
    for dtype in (jnp.bfloat16, jnp.float16):
        y = blur_pool(x.astype(dtype))
        assert y.dtype == dtype
        np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(ref), atol=3e-2)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"filter_size": 0}, ValueError, "filter_size"),
        ({"filter_size": 8}, ValueError, "filter_size=8"),
        ({"filter_size": 2.5}, TypeError, "filter_size"),
        ({"filter_size": (3, 3, 3)}, ValueError, "agree"),
        ({"stride": 0}, ValueError, "stride"),
        ({"pad_mode": "circular"}, ValueError, "pad_mode='circular'"),
        ({"spatial_dims": 0}, ValueError, "spatial_dims"),
        ({"spatial_dims": 4}, ValueError, "x.ndim=4"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    x = jnp.zeros((1, 5, 5, 2))
    if "filter_size" in kwargs and isinstance(kwargs["filter_size"], tuple):
        kwargs = {**kwargs, "stride": (2, 2)}
    with pytest.raises(error, match=match):
        blur_pool(x, **kwargs)


def test_bad_inputs():
    with pytest.raises(TypeError, match="x.dtype=int32"):
        blur_pool(jnp.zeros((1, 5, 2), jnp.int32))
    with pytest.raises(ValueError, match="reflect"):
        blur_pool(jnp.zeros((1, 3, 2)), filter_size=7)
    with pytest.raises(ValueError, match="x.ndim=2"):
        blur_pool(jnp.zeros((5, 2)))
    with pytest.raises(ValueError, match="window_shape"):
        max_blur_pool(jnp.zeros((1, 3, 2)), 4)
    with pytest.raises(ValueError, match="kernel"):
        conv_blur_pool(jnp.zeros((1, 5, 5, 2)), jnp.zeros((3, 3, 3, 4)))


def test_second_order():
    """f piecewise linear => Hessian of |f(x)|^2 / 2 is J^T J (J: Jacobian of f)."""
    x = jnp.asarray(np.random.default_rng(7).normal(size=(1, 6, 5, 1)), jnp.float32)
    for fn in (lambda v: blur_pool(v, filter_size=3), lambda v: max_blur_pool(v, 2)):
        hess = jax.jit(jax.hessian(lambda v, f=fn: 0.5 * jnp.sum(f(v) ** 2)))(x)
        jac = jax.jit(jax.jacobian(fn))(x).reshape(-1, x.size)
        np.testing.assert_allclose(np.asarray(hess).reshape(x.size, x.size),
                                   np.asarray(jac.T @ jac), atol=1e-5)


def test_frequency_response_is_binomial_low_pass():
    """Odd f: the centred binomial filter maps cos(w n) to cos(w / 2)^(f - 1) cos(w n)."""
    n = np.arange(40)
    for f, w in [(3, 0.4), (5, 1.3), (7, 2.9)]:
        x = np.cos(w * n).astype(np.float32)[None, :, None]
        y = np.asarray(blur_pool(x, filter_size=f, stride=1))[0, :, 0]
        inner = slice(f, -f)
        np.testing.assert_allclose(y[inner], np.cos(w / 2) ** (f - 1) * np.cos(w * n)[inner],
                                   atol=1e-5)
