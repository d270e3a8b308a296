"""NNX modules for the windowed pools of `poolnets.pooling.windowed`: `MaxPool`, `MinPool`,
`AvgPool`, `SumPool`, `LPPool` (whose exponent may be learned), and `MaxUnpool`.

Arguments mirror the functions (same defaults; `strides=None` means `strides =
window_shape`); shapes are `(*batch, *spatial, C) -> (*batch, *out, C)` with the output
rule of `poolnets.pooling.geometry`, which `output_shape`/`output_spatial` report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from poolnets.nnx._base import Shape, Windowed, check_bool, check_in_features, check_shape
from poolnets.pooling.geometry import IntOrSeq, Padding
from poolnets.pooling.indices import max_pool_with_indices, max_unpool
from poolnets.pooling.windowed import avg_pool, lp_pool, max_pool, min_pool, sum_pool


class MaxPool(Windowed):
    """`max_pool(x, window_shape, strides, padding, dilation=, ceil_mode=)`; with
    `return_indices=True` returns `(values, indices)` as `max_pool_with_indices` (the
    flat index into the input's spatial dims, as torch's `return_indices`)."""

    def __init__(self, window_shape: IntOrSeq, strides: IntOrSeq | None = None,
                 padding: Padding = 0, *, dilation: IntOrSeq = 1, ceil_mode: bool = False,
                 return_indices: bool = False):
        super().__init__(window_shape, strides, padding, dilation=dilation, ceil_mode=ceil_mode)
        self.return_indices = check_bool("return_indices", return_indices)

    def __call__(self, x: jax.Array) -> jax.Array | tuple[jax.Array, jax.Array]:
        pool = max_pool_with_indices if self.return_indices else max_pool
        return pool(x, self.window_shape, self.strides, self.padding, dilation=self.dilation,
                    ceil_mode=self.ceil_mode)


class MinPool(Windowed):
    """`min_pool(x, window_shape, strides, padding, dilation=, ceil_mode=)`."""

    def __init__(self, window_shape: IntOrSeq, strides: IntOrSeq | None = None,
                 padding: Padding = 0, *, dilation: IntOrSeq = 1, ceil_mode: bool = False):
        super().__init__(window_shape, strides, padding, dilation=dilation, ceil_mode=ceil_mode)

    def __call__(self, x: jax.Array) -> jax.Array:
        return min_pool(x, self.window_shape, self.strides, self.padding, dilation=self.dilation,
                        ceil_mode=self.ceil_mode)


class SumPool(Windowed):
    """`sum_pool(x, window_shape, strides, padding, dilation=, ceil_mode=)` (no limit on
    the padding: zeros add nothing)."""

    half_window_padding = False

    def __init__(self, window_shape: IntOrSeq, strides: IntOrSeq | None = None,
                 padding: Padding = 0, *, dilation: IntOrSeq = 1, ceil_mode: bool = False):
        super().__init__(window_shape, strides, padding, dilation=dilation, ceil_mode=ceil_mode)

    def __call__(self, x: jax.Array) -> jax.Array:
        return sum_pool(x, self.window_shape, self.strides, self.padding, dilation=self.dilation,
                        ceil_mode=self.ceil_mode)


class AvgPool(Windowed):
    """`avg_pool(x, window_shape, strides, padding, dilation=, ceil_mode=,
    count_include_pad=, divisor_override=)`."""

    def __init__(self, window_shape: IntOrSeq, strides: IntOrSeq | None = None,
                 padding: Padding = 0, *, dilation: IntOrSeq = 1, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override: int | None = None):
        super().__init__(window_shape, strides, padding, dilation=dilation, ceil_mode=ceil_mode)
        self.count_include_pad = check_bool("count_include_pad", count_include_pad)
        if divisor_override is not None and (
                isinstance(divisor_override, bool)
                or not isinstance(divisor_override, int | np.integer) or divisor_override == 0):
            raise ValueError(f"divisor_override must be a non-zero int or None; got "
                             f"divisor_override={divisor_override!r}")
        self.divisor_override = divisor_override

    def __call__(self, x: jax.Array) -> jax.Array:
        return avg_pool(x, self.window_shape, self.strides, self.padding, dilation=self.dilation,
                        ceil_mode=self.ceil_mode, count_include_pad=self.count_include_pad,
                        divisor_override=self.divisor_override)


def inverse_softplus(y: float) -> float:
    """`softplus^-1(y)` for `y > 0`."""
    return y + math.log(-math.expm1(-y))


class LPPool(Windowed):
    """`lp_pool(x, p, window_shape, strides, padding, ceil_mode=)`, fixed or learned `p`.

    `learnable=False`: `p` is the exponent (any value `lp_pool` accepts, `inf` included).
    `learnable=True`: the module owns `p_raw` (an `nnx.Param`, shape `()`, or
    `(in_features,)` with `per_feature=True`) and uses `p = 1 + softplus(p_raw)`, starting
    at `p` (then finite and > 1): learned-norm pooling (Gulcehre et al., 2014), kept a norm
    by `p > 1`. As torch's LPPool, inputs should be non-negative (e.g. after a ReLU).
    `in_features`, when given, is checked against the input's channels.
    """

    half_window_padding = False

    def __init__(self, window_shape: IntOrSeq, strides: IntOrSeq | None = None,
                 padding: Padding = 0, *, p: float = 2.0, ceil_mode: bool = False,
                 learnable: bool = False, per_feature: bool = False,
                 in_features: int | None = None, param_dtype: jnp.dtype = jnp.float32,
                 rngs: nnx.Rngs | None = None):
        del rngs  # constant initial value; accepted as every learnable pool takes it
        super().__init__(window_shape, strides, padding, ceil_mode=ceil_mode)
        self.learnable = check_bool("learnable", learnable)
        self.per_feature = check_bool("per_feature", per_feature)
        self.in_features = check_in_features(in_features, optional=not per_feature)
        if isinstance(p, bool) or not isinstance(p, int | float | np.number):
            raise TypeError(f"LPPool: p must be a number; got p={p!r}")
        if p == 0 or math.isnan(p):
            raise ValueError(f"LPPool: p must be non-zero and not NaN; got p={p!r}")
        self.p = float(p)
        if not learnable:
            if per_feature:
                raise ValueError("LPPool: per_feature=True needs learnable=True")
            return
        if not (math.isfinite(p) and p > 1):
            raise ValueError(f"LPPool: learnable p needs a finite initial p > 1; got p={p!r}")
        shape = (self.in_features,) if per_feature else ()
        self.p_raw = nnx.Param(jnp.full(shape, inverse_softplus(self.p - 1.0), param_dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        self.check_input(jnp.shape(x))
        p = 1.0 + jax.nn.softplus(self.p_raw[...]) if self.learnable else self.p
        return lp_pool(x, p, self.window_shape, self.strides, self.padding,
                       ceil_mode=self.ceil_mode)


class MaxUnpool(Windowed):
    """`max_unpool(values, indices, window_shape, strides, padding, output_size=)`: the
    partial inverse of `MaxPool(..., return_indices=True)` with the same geometry (zeros
    except `values` at `indices`). Default output length per dim `(in - 1) * s - lo - hi +
    k` (PyTorch's); `output_size` given to the call picks another within `± stride`, and
    `padding='SAME'` needs it."""

    def __init__(self, window_shape: IntOrSeq, strides: IntOrSeq | None = None,
                 padding: Padding = 0):
        super().__init__(window_shape, strides, padding)

    def __call__(self, values: jax.Array, indices: jax.Array, *,
                 output_size: Sequence[int] | None = None) -> jax.Array:
        return max_unpool(values, indices, self.window_shape, self.strides, self.padding,
                          output_size=output_size)

    def output_shape(self, input_shape: Sequence[int]) -> Shape:
        """Result shape for `values` of `input_shape` and the default output size."""
        shape = check_shape("input shape", input_shape)
        pooled = jax.ShapeDtypeStruct(shape, jnp.float32)
        index = jax.ShapeDtypeStruct(shape, jnp.int32)
        return jax.eval_shape(lambda v, i: self(v, i), pooled, index).shape
