"""Smooth weighted pools: GeM, log-sum-exp, SoftPool and LIP, windowed and global.

Windowed forms take `(x, window_shape, strides=None, padding=0)` with the conventions of
`poolnets.pooling.geometry` (no dilation or ceil mode; padding at most half the window):
`(*batch, *spatial, C) -> (*batch, *out, C)`, `out = floor((L + lo + hi - k) / s) + 1`.
Padded positions are not part of any window: every formula below runs over the window's
real input elements only (like `avg_pool(count_include_pad=False)`), so every pool maps a
constant input to that constant. Global forms reduce `(N, *spatial, C) -> (N, C)`.

Stability: each formula is evaluated relative to the window maximum `m` (held constant
for differentiation, which leaves values and gradients unchanged), so no exponential or
power overflows in float32; bfloat16/float16 inputs are computed in float32 and the
result is cast back to `x.dtype`. Parameters (`p`, `r`) broadcast against the output
`(*batch, *out, C)`, e.g. a scalar or one value per feature.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from poolnets.pooling.geometry import IntOrSeq, Padding, as_array
from poolnets.pooling.global_pools import _check_nsc
from poolnets.pooling.window_taps import (
    check_positive,
    compute_dtype,
    gather_window_taps,
    require_float,
    research_geometry,
    valid_tap_mask,
)

ArrayLike = Any


def _window_max(v, axis, mask):
    """Maximum over the valid taps, excluded from differentiation."""
    filled = v if mask is None else jnp.where(mask, v, -jnp.inf)
    return jax.lax.stop_gradient(jnp.max(filled, axis=axis, keepdims=True))


def _masked_sum(v, axis, mask):
    return jnp.sum(v if mask is None else jnp.where(mask, v, 0), axis=axis, keepdims=True)


def _count(v, axis, mask):
    return _masked_sum(jnp.ones_like(v), axis, mask)


# Reductions over `axis` of the valid taps of `v` (keepdims); parameters broadcast to `v`.
def _gem(v, axis, mask, p, eps):
    v = jnp.maximum(v, eps)
    m = _window_max(v, axis, mask)
    mean_pow = _masked_sum((v / m) ** p, axis, mask) / _count(v, axis, mask)
    return m * mean_pow ** (1.0 / p)


def _lse(v, axis, mask, r):
    m = _window_max(v, axis, mask)
    mean_exp = _masked_sum(jnp.exp(r * (v - m)), axis, mask) / _count(v, axis, mask)
    return m + jnp.log(mean_exp) / r


def _softmax_weighted(v, axis, mask, scores):
    weights = jnp.exp(scores - _window_max(scores, axis, mask))
    return _masked_sum(weights * v, axis, mask) / _masked_sum(weights, axis, mask)


def _soft(v, axis, mask):
    return _softmax_weighted(v, axis, mask, v)


def _param(name, value, out_shape, dtype, tap_axes):
    """A parameter that must broadcast to the output, with size-1 `tap_axes` inserted."""
    value = jnp.asarray(value, dtype)
    try:
        full = jnp.broadcast_shapes(value.shape, out_shape) == tuple(out_shape)
    except ValueError:
        full = False
    if not full:
        raise ValueError(
            f"{name} must broadcast to the output shape {tuple(out_shape)}; got "
            f"{name}.shape={value.shape}"
        )
    return jnp.expand_dims(jnp.broadcast_to(value, out_shape), tap_axes)


def _windowed(x, window_shape, strides, padding, op, op_name, params=(), logits=None):
    """`op(taps, -1, mask, *params)` over every window; shared by the windowed pools."""
    x = as_array(x, op_name)
    require_float(x, op_name)
    geometry = research_geometry(x, window_shape, strides, padding)
    out_shape = x.shape[: geometry.num_batch_dims] + geometry.output_shape + x.shape[-1:]
    dtype = compute_dtype(x.dtype)
    params = [_param(name, value, out_shape, dtype, -1) for name, value in params]
    if logits is not None:
        if logits.shape != x.shape:
            raise ValueError(f"logits must have x.shape={x.shape}; got logits.shape={logits.shape}")
        params.append(gather_window_taps(logits.astype(dtype), geometry))
    taps = gather_window_taps(x.astype(dtype), geometry)
    return op(taps, -1, valid_tap_mask(geometry), *params)[..., 0].astype(x.dtype)


def gem_pool(
    x: ArrayLike, window_shape: IntOrSeq, strides: IntOrSeq | None = None,
    padding: Padding = 0, *, p: ArrayLike = 3.0, eps: float = 1e-6,
) -> jax.Array:
    """Generalized-mean pooling (Radenovic, Tolias & Chum, "Fine-tuning CNN Image Retrieval
    with No Human Annotation", TPAMI 2018):

        y = ( mean_{i in window} max(x_i, eps)^p )^(1/p)

    `p = 1` is average pooling (of the clamped input), `p -> inf` tends to max pooling.
    `p > 0` (learnable in `poolnets.nnx.GeMPool`); `eps > 0`.
    `(*batch, *spatial, C) -> (*batch, *out, C)`.
    """
    check_positive("p", p)
    check_positive("eps", eps)
    params = (("p", p), ("eps", eps))
    return _windowed(x, window_shape, strides, padding, _gem, "gem_pool", params)


def lse_pool(
    x: ArrayLike, window_shape: IntOrSeq, strides: IntOrSeq | None = None,
    padding: Padding = 0, *, r: ArrayLike = 1.0,
) -> jax.Array:
    """Log-sum-exp pooling (Pinheiro & Collobert, "From Image-level to Pixel-level Labeling
    with Convolutional Networks", CVPR 2015):

        y = (1/r) log( mean_{i in window} exp(r x_i) )

    A smooth interpolation between average (`r -> 0`) and max (`r -> inf`); `r > 0`.
    """
    check_positive("r", r)
    return _windowed(x, window_shape, strides, padding, _lse, "lse_pool", (("r", r),))


def soft_pool(
    x: ArrayLike, window_shape: IntOrSeq, strides: IntOrSeq | None = None, padding: Padding = 0
) -> jax.Array:
    """SoftPool (Stergiou, Poppe & Kalliatakis, "Refining activation downsampling with
    SoftPool", ICCV 2021): the softmax-weighted sum of the window,

        y = sum_i exp(x_i) x_i / sum_j exp(x_j).
    """
    return _windowed(x, window_shape, strides, padding, _soft, "soft_pool")


def lip_pool(
    x: ArrayLike, logits: ArrayLike, window_shape: IntOrSeq, strides: IntOrSeq | None = None,
    padding: Padding = 0,
) -> jax.Array:
    """Local importance-based pooling (Gao, Wang & Wu, "LIP: Local Importance-based Pooling",
    ICCV 2019): importance weights `exp(logits)` average the window,

        y = sum_i x_i exp(l_i) / sum_j exp(l_j),

    with `logits` of the same shape as `x` (in the paper, and in `poolnets.nnx.LIPPool`,
    computed from `x` by a small convolution).
    """
    # Converted here: `_windowed` reads logits=None as "no logits".
    x, logits = as_array(x, "lip_pool"), as_array(logits, "lip_pool", "logits")
    return _windowed(
        x, window_shape, strides, padding, _softmax_weighted, "lip_pool", logits=logits
    )


def _global(x, fn_name, op, params, keepdims):
    x = as_array(x, fn_name)
    n = _check_nsc(fn_name, x)
    require_float(x, fn_name)
    if not isinstance(keepdims, bool):
        raise TypeError(f"keepdims must be a bool; got keepdims={keepdims!r}")
    dtype = compute_dtype(x.dtype)
    axes = tuple(range(1, 1 + n))
    out_shape = (x.shape[0], x.shape[-1])
    params = [_param(name, value, out_shape, dtype, axes) for name, value in params]
    y = op(x.astype(dtype), axes, None, *params)
    return (y if keepdims else y.reshape(out_shape)).astype(x.dtype)


def global_gem_pool(
    x: ArrayLike, *, p: ArrayLike = 3.0, eps: float = 1e-6, keepdims: bool = False
) -> jax.Array:
    """GeM over all spatial dims (Radenovic et al. 2018), the retrieval descriptor:
    `(N, *spatial, C) -> (N, C)` (or `(N, 1, ..., 1, C)` with `keepdims`),
    `y = (mean max(x, eps)^p)^(1/p)`. `p`: scalar, `(C,)` or `(N, C)`."""
    check_positive("p", p)
    check_positive("eps", eps)
    return _global(x, "global_gem_pool", _gem, (("p", p), ("eps", eps)), keepdims)


def global_lse_pool(x: ArrayLike, *, r: ArrayLike = 1.0, keepdims: bool = False) -> jax.Array:
    """Log-sum-exp over all spatial dims (Pinheiro & Collobert 2015),
    `y = (1/r) log mean exp(r x)`: `(N, *spatial, C) -> (N, C)`. `r`: scalar, `(C,)`
    or `(N, C)`, positive."""
    check_positive("r", r)
    return _global(x, "global_lse_pool", _lse, (("r", r),), keepdims)


def global_soft_pool(x: ArrayLike, *, keepdims: bool = False) -> jax.Array:
    """SoftPool over all spatial dims (Stergiou et al. 2021),
    `y = sum exp(x) x / sum exp(x)`: `(N, *spatial, C) -> (N, C)`."""
    return _global(x, "global_soft_pool", _soft, (), keepdims)
