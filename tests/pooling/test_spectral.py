"""Spectral pooling (exact on band-limited signals, scipy.signal.resample per axis) and
Haar wavelet pooling (hand-computed blocks, brute-force loops)."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal

from poolnets.pooling.spectral import spectral_pool, wavelet_pool


def band_limited(rng, out_shape, grids):
    """Random real trigonometric polynomial with every frequency |k| <= M/2 of the coarse
    grid `out_shape`, sampled on each grid in `grids` (`u = index / size` per axis).

    Even at the coarse Nyquist frequency +-M/2 the coarse samples are exact: there
    cos(pi m + theta) = (-1)^m cos(theta), which is what folding +M/2 and -M/2 gives."""
    samples = [np.zeros(g) for g in grids]
    for ks in itertools.product(*(range(-(m // 2), m // 2 + 1) for m in out_shape)):
        amp, phase = rng.normal(), rng.uniform(0, 2 * np.pi)
        for grid, out in zip(grids, samples, strict=True):
            coords = np.meshgrid(*(np.arange(g) / g for g in grid), indexing="ij")
            arg = sum(k * c for k, c in zip(ks, coords, strict=True))
            out += amp * np.cos(2 * np.pi * arg + phase)
    return samples


def test_band_limited_signal_is_reproduced_exactly():
    rng = np.random.default_rng(0)
    cases = [((16,), (5,)), ((9,), (4,)), ((10, 9), (4, 5)), ((6, 5, 7), (3, 4, 2))]
    for fine, coarse in cases:
        x, want = band_limited(rng, coarse, [fine, coarse])
        got = spectral_pool(jnp.asarray(x[None, ..., None], jnp.float32), coarse)
        assert got.dtype == jnp.float32 and got.shape == (1, *coarse, 1)
        np.testing.assert_allclose(np.asarray(got)[0, ..., 0], want, atol=2e-5,
                                   err_msg=str((fine, coarse)))


def test_matches_scipy_resample_per_axis():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 9, 8, 3)).astype(np.float32)
    for size in [(4, 5), (1, 1), (6, None)]:
        want = x.astype(np.float64)
        for axis, m in enumerate(size, start=1):
            if m is not None:
                want = scipy.signal.resample(want, m, axis=axis)
        got = spectral_pool(x, size)
        np.testing.assert_allclose(np.asarray(got), want, atol=2e-5, err_msg=str(size))


def test_real_output_mean_and_constants():
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(3, 10, 7, 2)), jnp.float32)
    y = spectral_pool(x, 4)  # int: every spatial dim (x.ndim - 2 of them)
    assert y.shape == (3, 4, 4, 2) and not jnp.iscomplexobj(y)
    np.testing.assert_allclose(np.asarray(y.mean(axis=(1, 2))), np.asarray(x.mean(axis=(1, 2))),
                               atol=1e-5)
    np.testing.assert_allclose(np.asarray(spectral_pool(jnp.full((5, 6, 1), 3.0), (2, 3))), 3.0,
                               atol=1e-6)
    np.testing.assert_array_equal(np.asarray(spectral_pool(x, (None, 7))), np.asarray(x))


def test_jit_vmap_adjoint_and_dtypes():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(2, 9, 8, 3)), jnp.float32)
    fn = lambda v: spectral_pool(v, (4, 5))  # noqa: E731
    y = fn(x)
    np.testing.assert_allclose(np.asarray(jax.jit(fn)(x)), np.asarray(y), atol=1e-6)
    np.testing.assert_allclose(np.asarray(jax.vmap(fn)(x[:, None])[:, 0]), np.asarray(y),
                               atol=1e-6)
    c = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
    grad = jax.grad(lambda v: jnp.sum(fn(v) * c))(x)
    assert grad.dtype == jnp.float32
    assert float(jnp.sum(y * c)) == pytest.approx(float(jnp.sum(x * grad)), rel=1e-4)
    for dtype in (jnp.bfloat16, jnp.float16):
        low = fn(x.astype(dtype))
        assert low.dtype == dtype
        np.testing.assert_allclose(np.asarray(low, np.float32), np.asarray(y), atol=5e-2)


def haar_reference(x: np.ndarray, levels: int, orthonormal: bool) -> np.ndarray:
    """Loops over 2^n blocks of `(B, *spatial, C)`; odd lengths repeat the last sample."""
    n = x.ndim - 2
    for _ in range(levels):
        spatial = x.shape[1:-1]
        out_shape = [-(-length // 2) for length in spatial]
        y = np.zeros((x.shape[0], *out_shape, x.shape[-1]))
        for o in itertools.product(*(range(m) for m in out_shape)):
            for t in itertools.product((0, 1), repeat=n):
                src = [min(2 * a + b, length - 1) for a, b, length in zip(o, t, spatial,
                                                                          strict=True)]
                y[(slice(None), *o)] += x[(slice(None), *src)]
        x = y / (2 ** (n / 2) if orthonormal else 2 ** n)
    return x


def test_wavelet_hand_computed():
    x = jnp.asarray([[1.0, 2.0, 5.0, 7.0], [3.0, 4.0, 9.0, 11.0]])[None, ..., None]
    np.testing.assert_allclose(np.asarray(wavelet_pool(x))[0, ..., 0], [[2.5, 8.0]])
    np.testing.assert_allclose(np.asarray(wavelet_pool(x, orthonormal=True))[0, ..., 0],
                               [[5.0, 16.0]])  # (1+2+3+4)/2, (5+7+9+11)/2
    np.testing.assert_allclose(np.asarray(wavelet_pool(x, levels=2))[0, ..., 0], [[5.25]])
    # level 2 sees the 1 x 2 map [[5, 16]]; its single row is repeated: (5 + 16 + 5 + 16) / 2
    np.testing.assert_allclose(np.asarray(wavelet_pool(x, levels=2, orthonormal=True))[0, ..., 0],
                               [[21.0]])
    odd = jnp.arange(9.0).reshape(1, 3, 3, 1)  # last row/column repeated
    np.testing.assert_allclose(np.asarray(wavelet_pool(odd))[0, ..., 0],
                               [[2.0, 3.5], [6.5, 8.0]])


def test_wavelet_brute_force_1d_2d_3d():
    rng = np.random.default_rng(4)
    for shape, levels, ortho in [((2, 9, 3), 2, False), ((1, 6, 5, 2), 1, True),
                                 ((2, 5, 4, 3, 1), 2, True), ((1, 7, 7, 2), 3, False)]:
        x = rng.normal(size=shape).astype(np.float32)
        got = wavelet_pool(x, levels=levels, orthonormal=ortho)
        np.testing.assert_allclose(np.asarray(got), haar_reference(x, levels, ortho), atol=1e-5)
    unbatched = wavelet_pool(jnp.ones((6, 6, 2)), spatial_dims=2)
    assert unbatched.shape == (3, 3, 2)


def test_wavelet_jit_vmap_grad():
    x = jnp.asarray(np.random.default_rng(5).normal(size=(2, 6, 5, 3)), jnp.float32)
    y = wavelet_pool(x, levels=2)
    np.testing.assert_allclose(np.asarray(jax.jit(wavelet_pool)(x)), np.asarray(wavelet_pool(x)),
                               atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(jax.vmap(lambda v: wavelet_pool(v, levels=2))(x[:, None])[:, 0]), np.asarray(y),
        atol=1e-6)
    grad = jax.grad(lambda v: jnp.sum(wavelet_pool(v)))(x)
    # each block mean spreads 1/4 to its inputs; odd columns' last input feeds a block twice
    np.testing.assert_allclose(np.asarray(grad)[:, :, :4], 0.25)
    np.testing.assert_allclose(np.asarray(grad)[:, :, 4], 0.5)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda x: spectral_pool(x, 0), ValueError, "output_size=0"),
        (lambda x: spectral_pool(x, (9, 2)), ValueError, r"output_size=\(9, 2\)"),
        (lambda x: spectral_pool(x, "4"), TypeError, "output_size='4'"),
        (lambda x: spectral_pool(x, (2.0, 2)), TypeError, "output_size"),
        (lambda x: spectral_pool(x.astype(jnp.int32), 2), TypeError, "dtype"),
        (lambda x: wavelet_pool(x, levels=0), ValueError, "levels=0"),
        (lambda x: wavelet_pool(x, orthonormal=1), TypeError, "orthonormal=1"),
        (lambda x: wavelet_pool(x[0, 0]), ValueError, "x.ndim=2"),
    ],
)
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call(jnp.zeros((1, 8, 8, 2)))
