"""max/min/avg/sum/lp pools against the brute-force loops of `windowed_reference`, forward
values and input gradients, on seeded random configurations (1-D to 4-D, 0-2 batch dims,
every padding form, dilation, ceil_mode). Run eagerly: tiny shapes, no per-shape jit."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from windowed_reference import random_config, ref_avg, ref_extreme, windows_for

from poolnets.pooling import avg_pool, lp_pool, max_pool, min_pool, sum_pool

NUM_CONFIGS = 24


def _vjp(fn, x, g):
    """(fn(x), input gradient for cotangent g), as one jitted program: one compile per
    random shape is cheaper than compiling each primitive eagerly."""

    def value_and_pullback(x, g):
        out, pullback = jax.vjp(fn, x)
        return out, pullback(g.astype(out.dtype))[0]

    out, grad = jax.jit(value_and_pullback)(jnp.asarray(x), jnp.asarray(g))
    return np.asarray(out, np.float64), np.asarray(grad)


def _tie_heavy(rng, shape, specials: bool):
    x = rng.integers(-2, 3, shape).astype(np.float32)
    if specials:
        # sometimes dense enough that windows hold several NaNs (the last one wins)
        x[rng.random(shape) < rng.choice([0.08, 0.3])] = np.nan
        x[rng.random(shape) < 0.05] = -np.inf
        x[rng.random(shape) < 0.05] = np.inf
    return x


@pytest.mark.parametrize("largest, chunk", [(True, 0), (True, 1), (False, 0)],
                         ids=["max-0", "max-1", "min-0"])
def test_extreme_pools_match_reference(largest, chunk):
    rng = np.random.default_rng(1000 * largest + chunk)
    pool_fn = max_pool if largest else min_pool
    for _ in range(NUM_CONFIGS):
        kwargs, shape = random_config(rng, half_window_padding=True)
        w = windows_for(kwargs, shape)
        x = _tie_heavy(rng, shape, specials=rng.random() < 0.4)
        out_shape = shape[: len(shape) - 1 - len(w.spatial)] + w.out + shape[-1:]
        g = rng.standard_normal(out_shape).astype(np.float32)
        want, _, want_grad = ref_extreme(x, g, w, largest=largest)
        got, got_grad = _vjp(functools.partial(pool_fn, **kwargs), x, g)
        np.testing.assert_array_equal(got, want, err_msg=str((kwargs, shape)))
        np.testing.assert_allclose(got_grad, want_grad, rtol=1e-6, atol=1e-6,
                                   err_msg=str((kwargs, shape)))


@pytest.mark.parametrize("chunk", range(2))
def test_avg_and_sum_pools_match_reference(chunk):
    rng = np.random.default_rng(2000 + chunk)
    for _ in range(NUM_CONFIGS):
        kwargs, shape = random_config(rng, half_window_padding=True)
        w = windows_for(kwargs, shape)
        x = rng.standard_normal(shape).astype(np.float32)
        out_shape = shape[: len(shape) - 1 - len(w.spatial)] + w.out + shape[-1:]
        g = rng.standard_normal(out_shape).astype(np.float32)
        include = bool(rng.random() < 0.5)
        override = int(rng.choice([-3, 2, 7])) if rng.random() < 0.2 else None
        msg = str((kwargs, shape, include, override))
        want, want_grad = ref_avg(x, g, w, count_include_pad=include, divisor_override=override)
        got, got_grad = _vjp(functools.partial(
            avg_pool, count_include_pad=include, divisor_override=override, **kwargs), x, g)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=msg)
        np.testing.assert_allclose(got_grad, want_grad, rtol=1e-5, atol=1e-5, err_msg=msg)
        want, want_grad = ref_avg(x, g, w, mode="sum")
        got, got_grad = _vjp(functools.partial(sum_pool, **kwargs), x, g)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=msg)
        np.testing.assert_allclose(got_grad, want_grad, rtol=1e-5, atol=1e-5, err_msg=msg)


def test_sum_pool_accepts_any_padding():
    rng = np.random.default_rng(3000)
    for _ in range(20):
        kwargs, shape = random_config(rng, half_window_padding=False)
        w = windows_for(kwargs, shape)
        x = rng.standard_normal(shape).astype(np.float32)
        want, _ = ref_avg(x, None, w, mode="sum")
        np.testing.assert_allclose(np.asarray(sum_pool(x, **kwargs)), want, rtol=1e-5,
                                   atol=1e-5, err_msg=str((kwargs, shape)))


@pytest.mark.parametrize("chunk", range(2))
def test_lp_pool_matches_torch_formula_reference(chunk):
    rng = np.random.default_rng(4000 + chunk)
    for _ in range(NUM_CONFIGS):
        kwargs, shape = random_config(rng, half_window_padding=False, dilation=False)
        w = windows_for(kwargs, shape)  # dilation is all ones: lp_pool has none
        kwargs.pop("dilation")
        p = float(rng.choice([1.0, 2.0, 3.0, 1.5, 0.5]))
        x = np.abs(rng.standard_normal(shape)).astype(np.float32) + 0.1
        if p >= 1 and rng.random() < 0.3:
            x[rng.random(shape) < 0.5] = 0.0  # all-zero windows: gradient must be 0
        out_shape = shape[: len(shape) - 1 - len(w.spatial)] + w.out + shape[-1:]
        g = rng.standard_normal(out_shape).astype(np.float32)
        want, want_grad = ref_avg(x, g, w, mode="lp", p=p)
        got, got_grad = _vjp(functools.partial(lp_pool, p=p, **kwargs), x, g)
        msg = str((kwargs, shape, p))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=msg)
        np.testing.assert_allclose(got_grad, want_grad, rtol=1e-4, atol=1e-4, err_msg=msg)
