"""NNX modules for the smooth weighted pools and median pooling of `poolnets.pooling`
(`weighted.py`, `median.py`): `GeMPool`, `LSEPool`, `SoftPool`, `LIPPool`, `MedianPool`,
and the global heads `GlobalGeMPool`, `GlobalLSEPool`, `GlobalSoftPool`.

Windowed modules take `window_shape`, `strides` (None: = window) and `padding` with the
research pools' geometry (no dilation or ceil mode, padding at most half the window).
Learnable quantities are `nnx.Param`s in float32; inputs keep their dtype. Formulas and
citations are in the wrapped functions' docstrings.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from poolnets.nnx._base import Windowed, check_bool, check_in_features
from poolnets.nnx.global_pools import GlobalPool
from poolnets.pooling.geometry import IntOrSeq, Padding
from poolnets.pooling.median import median_pool
from poolnets.pooling.weighted import (
    gem_pool,
    global_gem_pool,
    global_lse_pool,
    global_soft_pool,
    lip_pool,
    lse_pool,
    soft_pool,
)
from poolnets.pooling.window_taps import check_positive


def _positive_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise TypeError(f"{name} must be a number; got {name}={value!r}")
    check_positive(name, value)
    return float(value)


class _GeM:
    """The exponent of the GeM modules: learnable `p` (an `nnx.Param`, shape `()` or
    `(in_features,)` with `per_feature`) starting at `p` and used as `max(p, p_min)`, so
    that training cannot push it to 0; or the constant `p` with `learnable=False`."""

    def init_exponent(self, p: float, p_min: float, eps: float, learnable: bool,
                      per_feature: bool, in_features: int | None) -> None:
        self.learnable = check_bool("learnable", learnable)
        self.per_feature = check_bool("per_feature", per_feature)
        self.in_features = check_in_features(in_features, optional=not per_feature)
        self.eps = _positive_number("eps", eps)
        self.p_min = _positive_number("p_min", p_min)
        p = _positive_number("p", p)
        if per_feature and not learnable:
            raise ValueError(f"{type(self).__name__}: per_feature=True needs learnable=True")
        shape = (self.in_features,) if per_feature else ()
        self.p = nnx.Param(jnp.full(shape, p, jnp.float32)) if learnable else p

    def exponent(self) -> jax.Array | float:
        return jnp.maximum(self.p[...], self.p_min) if self.learnable else self.p


class GeMPool(Windowed, _GeM):
    """GeM pooling (Radenovic et al. 2018, `pooling.gem_pool`) over windows, with a
    learnable exponent (see `_GeM`); inputs are clamped at `eps`."""

    def __init__(self, window_shape: IntOrSeq, strides: IntOrSeq | None = None,
                 padding: Padding = 0, *, p: float = 3.0, p_min: float = 1.0,
                 eps: float = 1e-6, learnable: bool = True, per_feature: bool = False,
                 in_features: int | None = None, rngs: nnx.Rngs | None = None):
        del rngs  # constant initial value; accepted as every learnable pool takes it
        super().__init__(window_shape, strides, padding)
        self.init_exponent(p, p_min, eps, learnable, per_feature, in_features)

    def __call__(self, x: jax.Array) -> jax.Array:
        self.check_input(jnp.shape(x))
        return gem_pool(x, **self.geometry_args(), p=self.exponent(), eps=self.eps)


class LSEPool(Windowed):
    """Log-sum-exp pooling (Pinheiro & Collobert 2015, `pooling.lse_pool`) with sharpness
    `r`, or, with `learnable=True`, `r = exp(log_r)` (always positive; `log_r` an
    `nnx.Param` starting at `log(r)`)."""

    def __init__(self, window_shape: IntOrSeq, strides: IntOrSeq | None = None,
                 padding: Padding = 0, *, r: float = 1.0, learnable: bool = False,
                 rngs: nnx.Rngs | None = None):
        del rngs  # constant initial value; accepted as every learnable pool takes it
        super().__init__(window_shape, strides, padding)
        self.r = _positive_number("r", r)
        self.learnable = check_bool("learnable", learnable)
        if learnable:
            self.log_r = nnx.Param(jnp.full((), math.log(self.r), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        r = jnp.exp(self.log_r[...]) if self.learnable else self.r
        return lse_pool(x, **self.geometry_args(), r=r)


class SoftPool(Windowed):
    """SoftPool (Stergiou et al. 2021, `pooling.soft_pool`); no parameters."""

    def __init__(self, window_shape: IntOrSeq, strides: IntOrSeq | None = None,
                 padding: Padding = 0):
        super().__init__(window_shape, strides, padding)

    def __call__(self, x: jax.Array) -> jax.Array:
        return soft_pool(x, **self.geometry_args())


class MedianPool(Windowed):
    """Median pooling (`pooling.median_pool`, lower median, padded taps excluded); no
    parameters."""

    def __init__(self, window_shape: IntOrSeq, strides: IntOrSeq | None = None,
                 padding: Padding = 0):
        super().__init__(window_shape, strides, padding)

    def __call__(self, x: jax.Array) -> jax.Array:
        return median_pool(x, **self.geometry_args())


class LIPPool(Windowed):
    """Local importance-based pooling (Gao, Wang & Wu 2019, `pooling.lip_pool`).

    Importance logits come from a small fully convolutional branch, as in the authors'
    simplified LIP: `logits = coeff * sigmoid(InstanceNorm(conv_k(x)))`, a `k`-wide 'SAME'
    convolution `logit_conv` keeping the `in_features` channels (no bias), then
    `logit_norm`, with `coeff = 12` (their value; it bounds the weight ratio by e^12). The
    branch runs in `dtype`. An int `window_shape` needs `spatial_dims` (the conv's rank).
    """

    def __init__(self, in_features: int, window_shape: IntOrSeq,
                 strides: IntOrSeq | None = None, padding: Padding = 0, *,
                 logit_kernel: int = 3, coeff: float = 12.0, spatial_dims: int | None = None,
                 dtype: Any = jnp.float32, rngs: nnx.Rngs):
        super().__init__(window_shape, strides, padding, spatial_dims=spatial_dims)
        self.in_features = check_in_features(in_features)
        if isinstance(logit_kernel, bool) or not isinstance(logit_kernel, int) or (
                logit_kernel < 1):
            raise ValueError(f"logit_kernel must be a positive int; got {logit_kernel!r}")
        self.coeff = float(coeff)
        n = len(self.window())
        self.logit_conv = nnx.Conv(self.in_features, self.in_features, (logit_kernel,) * n,
                                   padding="SAME", use_bias=False, dtype=dtype, rngs=rngs)
        self.logit_norm = nnx.InstanceNorm(self.in_features, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        self.check_input(jnp.shape(x))
        h = self.logit_norm(self.logit_conv(x))
        logits = self.coeff * jax.nn.sigmoid(h.astype(jnp.float32))
        return lip_pool(x, logits, **self.geometry_args())


class GlobalGeMPool(GlobalPool, _GeM):
    """Global GeM (`pooling.global_gem_pool`), Radenovic et al.'s retrieval descriptor,
    with the learnable exponent of `GeMPool`."""

    def __init__(self, *, p: float = 3.0, p_min: float = 1.0, eps: float = 1e-6,
                 learnable: bool = True, per_feature: bool = False,
                 in_features: int | None = None, keepdims: bool = False,
                 rngs: nnx.Rngs | None = None):
        del rngs  # constant initial value; accepted as every learnable pool takes it
        super().__init__(keepdims=keepdims)
        self.init_exponent(p, p_min, eps, learnable, per_feature, in_features)

    def __call__(self, x: jax.Array) -> jax.Array:
        self.check_input(jnp.shape(x))
        return global_gem_pool(x, p=self.exponent(), eps=self.eps, keepdims=self.keepdims)


class GlobalLSEPool(GlobalPool):
    """Global log-sum-exp (`pooling.global_lse_pool`) with a fixed sharpness `r`."""

    def __init__(self, *, r: float = 1.0, keepdims: bool = False):
        super().__init__(keepdims=keepdims)
        self.r = _positive_number("r", r)

    def __call__(self, x: jax.Array) -> jax.Array:
        return global_lse_pool(x, r=self.r, keepdims=self.keepdims)


class GlobalSoftPool(GlobalPool):
    """Global SoftPool (`pooling.global_soft_pool`); no parameters."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return global_soft_pool(x, keepdims=self.keepdims)
