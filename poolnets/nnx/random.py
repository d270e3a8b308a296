"""NNX modules for the random pools: `StochasticPool` (Zeiler & Fergus 2013) and
`FractionalMaxPool` (Graham 2014); `RandomMixedPool` is in `mixing.py`.

As `nnx.Dropout`: built with `rngs` (their "pool" stream is forked), random while
`deterministic=False` (the default, training), deterministic after `module.eval()`
(`deterministic=True`); `deterministic=` and `rngs=` (an `nnx.Rngs`, a stream or a key)
given to a call override the module's for that call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from poolnets.nnx._base import (
    Pool,
    Random,
    Shape,
    Windowed,
    check_bool,
    check_shape,
    check_spatial_dims,
    frozen,
    rank_hint,
)
from poolnets.pooling.fractional import fractional_max_pool
from poolnets.pooling.geometry import IntOrSeq, Padding, normalize_tuple
from poolnets.pooling.stochastic import stochastic_pool


class StochasticPool(Windowed, Random):
    """Stochastic pooling (`pooling.stochastic_pool`): samples one activation per window
    in training, the probability-weighted average in evaluation."""

    def __init__(self, window_shape: IntOrSeq, strides: IntOrSeq | None = None,
                 padding: Padding = 0, *, deterministic: bool = False,
                 rngs: nnx.Rngs | nnx.RngStream | None = None):
        super().__init__(window_shape, strides, padding)
        self.init_random(rngs, deterministic)

    def __call__(self, x: jax.Array, *, deterministic: bool | None = None,
                 rngs: nnx.Rngs | nnx.RngStream | jax.Array | None = None) -> jax.Array:
        key = self.key(deterministic, rngs)
        return stochastic_pool(x, **self.geometry_args(), key=key)


class FractionalMaxPool(Pool, Random):
    """Fractional max pooling (`pooling.fractional_max_pool`).

    Output size per spatial dim: `output_size` (an entry None keeps the dim), or
    `ceil(L / ratio)` with `ratio` in [1, 2] (one value, or one per spatial dim; Graham's
    FMP uses sqrt(2)); exactly one of the two. The spatial rank is `len(output_size)`, else
    the length of a tuple `ratio`, else `spatial_dims`, else `x.ndim - 2`. Regions are drawn
    from the "pool" stream in training; evaluation uses the fixed pseudo-random regions of
    `key=None` (Graham instead averages several random draws at test time).
    """

    def __init__(self, output_size: Sequence[int | None] | None = None, *,
                 ratio: float | Sequence[float] | None = None, overlapping: bool = False,
                 pseudo_random: bool = False, kernel_size: IntOrSeq | None = None,
                 spatial_dims: int | None = None, deterministic: bool = False,
                 rngs: nnx.Rngs | nnx.RngStream | None = None):
        if (output_size is None) == (ratio is None):
            raise ValueError(
                "FractionalMaxPool needs exactly one of output_size and ratio; got "
                f"output_size={output_size!r}, ratio={ratio!r}"
            )
        if ratio is not None:
            ratios = np.asarray(ratio, float)
            if ratios.ndim > 1 or not np.all((ratios >= 1) & (ratios <= 2)):
                raise ValueError(f"ratio must lie in [1, 2] (one, or one per spatial dim); got "
                                 f"ratio={ratio!r}")
        self.output_size = frozen(output_size)
        self.ratio = frozen(ratio)
        self.overlapping = check_bool("overlapping", overlapping)
        self.pseudo_random = check_bool("pseudo_random", pseudo_random)
        self.kernel_size = frozen(kernel_size)
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.init_random(rngs, deterministic)
        n = self.rank() or rank_hint(kernel_size)
        kernel = normalize_tuple(1 if kernel_size is None else kernel_size, n, "kernel_size")
        if output_size is not None:
            # The function's own checks of output_size, on an abstract input it can pool to
            # that size (PyTorch's rule needs output + kernel - 1 <= input).
            entries = self.output_size if isinstance(self.output_size, tuple) else (1,) * n
            probe = tuple(s + k - 1 if isinstance(s, int) and s >= 1 else 1
                          for s, k in zip(entries, kernel, strict=True))
            self.output_shape((1, *probe, 1))

    def rank(self) -> int | None:
        """The spatial rank fixed when built, or None (then `x.ndim - 2`)."""
        if self.output_size is not None:
            return len(self.output_size) if isinstance(self.output_size, tuple) else None
        if isinstance(self.ratio, tuple):
            return len(self.ratio)
        return self.spatial_dims

    def sizes(self, input_shape: Sequence[int]) -> tuple[int | None, ...]:
        """The `output_size` the function gets for an input of `input_shape`."""
        if self.output_size is not None:
            return self.output_size
        n = self.rank() or len(input_shape) - 2
        if n < 1 or len(input_shape) < n + 1:
            raise ValueError(f"FractionalMaxPool needs an input (*batch, *spatial, C); got "
                             f"shape {tuple(input_shape)}")
        ratios = np.broadcast_to(np.asarray(self.ratio, float), (n,))
        spatial = input_shape[len(input_shape) - 1 - n:-1]
        return tuple(math.ceil(length / r) for length, r in zip(spatial, ratios, strict=True))

    def __call__(self, x: jax.Array, *, deterministic: bool | None = None,
                 rngs: nnx.Rngs | nnx.RngStream | jax.Array | None = None) -> jax.Array:
        key = self.key(deterministic, rngs)
        return fractional_max_pool(x, self.sizes(jnp.shape(x)), key=key,
                                   overlapping=self.overlapping, pseudo_random=self.pseudo_random,
                                   kernel_size=self.kernel_size)

    def output_shape(self, input_shape: Sequence[int]) -> Shape:
        shape = check_shape("input shape", input_shape)
        sizes = self.sizes(shape)

        def pool(x):
            return fractional_max_pool(x, sizes, overlapping=self.overlapping,
                                       pseudo_random=self.pseudo_random,
                                       kernel_size=self.kernel_size)

        return jax.eval_shape(pool, jax.ShapeDtypeStruct(shape, jnp.float32)).shape
