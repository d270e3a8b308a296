"""Flax (linen) modules for the windowed pools of `poolnets.pooling.windowed`.

Thin wrappers: fields mirror the functions' arguments (same defaults, `strides=None`
meaning `strides = window_shape`), shapes are `(*batch, *spatial, C) ->
(*batch, *out, C)` with the output rule of `poolnets.pooling.geometry`. Only `LPPool`
can own a parameter (a learnable `p`).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from poolnets.pooling.geometry import IntOrSeq, Padding
from poolnets.pooling.windowed import avg_pool, lp_pool, max_pool, min_pool


class MaxPool(nn.Module):
    """`max_pool(x, window_shape, strides, padding, dilation=, ceil_mode=)`."""

    window_shape: IntOrSeq
    strides: IntOrSeq | None = None
    padding: Padding = 0
    dilation: IntOrSeq = 1
    ceil_mode: bool = False

    def __call__(self, x: jax.Array) -> jax.Array:
        return max_pool(x, self.window_shape, self.strides, self.padding,
                        dilation=self.dilation, ceil_mode=self.ceil_mode)


class MinPool(nn.Module):
    """`min_pool(x, window_shape, strides, padding, dilation=, ceil_mode=)`."""

    window_shape: IntOrSeq
    strides: IntOrSeq | None = None
    padding: Padding = 0
    dilation: IntOrSeq = 1
    ceil_mode: bool = False

    def __call__(self, x: jax.Array) -> jax.Array:
        return min_pool(x, self.window_shape, self.strides, self.padding,
                        dilation=self.dilation, ceil_mode=self.ceil_mode)


class AvgPool(nn.Module):
    """`avg_pool(x, window_shape, strides, padding, dilation=, ceil_mode=,
    count_include_pad=, divisor_override=)`."""

    window_shape: IntOrSeq
    strides: IntOrSeq | None = None
    padding: Padding = 0
    dilation: IntOrSeq = 1
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: int | None = None

    def __call__(self, x: jax.Array) -> jax.Array:
        return avg_pool(x, self.window_shape, self.strides, self.padding,
                        dilation=self.dilation, ceil_mode=self.ceil_mode,
                        count_include_pad=self.count_include_pad,
                        divisor_override=self.divisor_override)


def _inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class LPPool(nn.Module):
    """`lp_pool(x, p, window_shape, strides, padding, ceil_mode=)` with fixed or learned p.

    With `learnable=False`, `p` is the constant exponent (any value `lp_pool` accepts,
    incl. `inf`). With `learnable=True` the module owns a param `"p_raw"` (shape `()`, or
    `(C,)` with `per_feature=True`) and uses `p = 1 + softplus(p_raw)`, initialised so that
    `p` starts at the field `p` (which must then be finite and > 1). Keeping `p > 1` makes
    the pool a norm, the parametrisation of learned-norm pooling (Gulcehre et al., 2014,
    "Learned-Norm Pooling for Deep Feedforward and Recurrent Neural Networks").
    As with PyTorch's LPPool, inputs should be non-negative (e.g. after a ReLU): a
    negative input with non-integer p gives NaN.
    """

    window_shape: IntOrSeq
    strides: IntOrSeq | None = None
    padding: Padding = 0
    ceil_mode: bool = False
    p: float = 2.0
    learnable: bool = False
    per_feature: bool = False
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        p = self.p
        if self.learnable:
            if not (math.isfinite(self.p) and self.p > 1):
                raise ValueError(f"LPPool: learnable p needs a finite initial p > 1; got p={p!r}")
            shape = (x.shape[-1],) if self.per_feature else ()
            start = _inverse_softplus(self.p - 1.0)
            raw = self.param("p_raw", nn.initializers.constant(start), shape,
                             self.param_dtype)
            p = 1.0 + jax.nn.softplus(raw)
        elif self.per_feature:
            raise ValueError("LPPool: per_feature=True needs learnable=True")
        return lp_pool(x, p, self.window_shape, self.strides, self.padding,
                       ceil_mode=self.ceil_mode)
