"""Explicit window taps for research pools whose reduction is not a `lax.reduce_window` monoid.

Weighted, stochastic and median pools need every element of a window at once (softmax
weights, sampling, sorting). `gather_window_taps` lays the windows out along a trailing
tap axis, `(*batch, *out, features, K)` with `K = prod(window_shape)`, using one strided
slice per tap offset (cheap for the small windows these pools use, differentiable,
any dtype). Geometry (argument checks, padding, output shape) comes from
`poolnets.pooling.geometry`; research pools ignore padded taps, so `valid_tap_mask`
marks which taps fall on real input elements.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from poolnets.pooling.geometry import Padding, WindowGeometry, window_geometry


def research_geometry(
    x: jax.Array, window_shape: Any, strides: Any, padding: Padding
) -> WindowGeometry:
    """Geometry of a research pool: no dilation, floor mode, and padding of at most half
    the window (so every window holds at least one real input element)."""
    return window_geometry(
        np.shape(x), window_shape, strides, padding, max_padding_half_window=True
    )


def require_float(x: jax.Array, op: str) -> None:
    """Weighted pools average; integer input is a `TypeError`, as for `avg_pool`."""
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{op} averages and needs a floating-point x; got x.dtype={x.dtype}")


def check_positive(name: str, value: Any) -> None:
    """`ValueError` unless every entry of a concrete `value` is finite and > 0.

    Traced values (a learnable parameter under `jit`/`grad`) cannot be inspected and are
    left to the caller's parametrisation (e.g. a softplus).
    """
    if isinstance(value, jax.core.Tracer):
        return
    arr = np.asarray(value)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name} must be a real number or array; got {name}={value!r}")
    if arr.dtype == bool or not np.all(np.isfinite(arr) & (arr > 0)):
        raise ValueError(f"{name} must be finite and > 0; got {name}={value!r}")


def check_key(key: Any, op: str) -> None:
    """`TypeError`/`ValueError` naming `key` unless it is one PRNG key: a typed key of
    shape `()` (`jax.random.key(seed)`) or a legacy raw key, uint32 of shape `(2,)`
    (`jax.random.PRNGKey(seed)`, default threefry implementation). Every random pool
    draws through `uniform_noise`, which calls this; the pools also call it on entry, so
    a bad key fails before any other work. A batch of keys is refused (one key draws
    for the whole batch; `jax.vmap` maps a pool over keys)."""
    dtype, shape = getattr(key, "dtype", None), getattr(key, "shape", None)
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key):
        if shape != ():
            raise ValueError(
                f"{op}: key must be a single PRNG key (shape ()); got a key array of shape "
                f"{shape}. Use one key (jax.random.split for several calls, jax.vmap to map "
                "over a batch of keys)"
            )
        return
    if dtype is not None and np.dtype(dtype) == np.uint32:
        if tuple(shape) != (2,):
            raise ValueError(
                f"{op}: a raw uint32 key must have shape (2,) (jax.random.PRNGKey); got "
                f"key.shape={tuple(shape)}. Pass a single key; jax.vmap maps over a batch"
            )
        return
    what = type(key).__name__ + (f" with dtype {dtype}" if dtype is not None else "")
    raise TypeError(
        f"{op}: key must be a PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed)) or "
        f"None; got key={key!r:.60} of type {what}"
    )


def uniform_noise(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    """`U[0, 1)` noise of `shape`, drawn flat and reshaped: identical in distribution, and
    multi-dimensional draws with partitionable threefry compile ~15x slower on CPU
    (measured: ~10 s vs ~0.7 s for a (2, 3, 2, 3, 9) draw, jax 0.10.2). `key` is checked
    by `check_key`."""
    check_key(key, "uniform_noise")
    return jax.random.uniform(key, (math.prod(shape),), dtype).reshape(shape)


def compute_dtype(dtype: Any) -> Any:
    """Accumulation dtype: float32 for half-precision inputs, else the input dtype."""
    return jnp.promote_types(dtype, jnp.float32)


def gather_window_taps(x: jax.Array, geometry: WindowGeometry) -> jax.Array:
    """All taps of every window: `(*batch, *spatial, C)` -> `(*batch, *out, C, K)`.

    Tap `k` is the window offset `np.unravel_index(k, window_shape)` (row-major). Taps in
    the padding hold 0; combine with `valid_tap_mask` before reducing.
    """
    nb = geometry.num_batch_dims
    pad = ((0, 0),) * nb + geometry.padding + ((0, 0),)
    padded = jnp.pad(x, pad)
    taps = []
    for offset in itertools.product(*(range(k) for k in geometry.window_shape)):
        start = (0,) * nb + offset + (0,)
        limit = (
            padded.shape[:nb]
            + tuple(
                o + (n - 1) * s + 1
                for o, n, s in zip(offset, geometry.output_shape, geometry.strides, strict=True)
            )
            + padded.shape[-1:]
        )
        step = (1,) * nb + geometry.strides + (1,)
        taps.append(lax.slice(padded, start, limit, step))
    return jnp.stack(taps, axis=-1)


def valid_tap_mask(geometry: WindowGeometry) -> np.ndarray:
    """Boolean `(*out, 1, K)`: True where a tap lies on the input, not in padding.

    Static (depends only on the geometry), so it costs nothing under `jit`.
    """
    per_axis = []
    for axis, (length, k) in enumerate(zip(geometry.input_shape, geometry.window_shape,
                                            strict=True)):
        taps = geometry.window_starts(axis)[:, None] + np.arange(k)
        per_axis.append((taps >= 0) & (taps < length))
    n = len(per_axis)
    mask = np.ones((1,) * (2 * n), dtype=bool)
    for axis, valid in enumerate(per_axis):
        shape = [1] * (2 * n)
        shape[axis], shape[n + axis] = valid.shape
        mask = mask & valid.reshape(shape)
    # (*out, *window) -> (*out, 1, K): window offsets flattened row-major like the taps.
    return mask.reshape(geometry.output_shape + (1, -1))


def valid_tap_count(geometry: WindowGeometry) -> np.ndarray:
    """Number of real input elements per window, `(*out, 1)` int."""
    return valid_tap_mask(geometry).sum(axis=-1)
