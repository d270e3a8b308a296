"""NNX modules for the learned mixtures of max and average pooling of
`poolnets.pooling.mixing` (Lee, Gallagher & Tu, AISTATS 2016, and Yu et al., RSKT 2014):
`MixedPool` (learned alpha), `RandomMixedPool` (random alpha in training), `GatedPool`
and `TreePool`.

Research-pool geometry (no dilation or ceil mode, padding at most half the window).
Filters have the window's shape (`+ (in_features,)` with `per_feature`), so `GatedPool`
and `TreePool` need the spatial rank when built: a tuple `window_shape`, or an int with
`spatial_dims`. Parameters are float32 `nnx.Param`s (initial values in each class).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from poolnets.nnx._base import Random, Windowed, check_bool, check_in_features
from poolnets.pooling.geometry import IntOrSeq, Padding
from poolnets.pooling.mixing import gated_pool, mixed_pool, tree_pool
from poolnets.pooling.window_taps import uniform_noise


class MixedPool(Windowed):
    """`alpha * max + (1 - alpha) * avg` (`pooling.mixed_pool`) with learned
    `alpha = sigmoid(alpha_logit)` (Lee et al. 2016): `alpha_logit` an `nnx.Param` of shape
    `()`, or `(in_features,)` with `per_feature`, starting at 0 (alpha 1/2)."""

    def __init__(self, window_shape: IntOrSeq, strides: IntOrSeq | None = None,
                 padding: Padding = 0, *, per_feature: bool = False,
                 in_features: int | None = None, rngs: nnx.Rngs | None = None):
        del rngs  # constant initial value; accepted as every learnable pool takes it
        super().__init__(window_shape, strides, padding)
        self.per_feature = check_bool("per_feature", per_feature)
        self.in_features = check_in_features(in_features, optional=not per_feature)
        shape = (self.in_features,) if per_feature else ()
        self.alpha_logit = nnx.Param(jnp.zeros(shape, jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        self.check_input(jnp.shape(x))
        return mixed_pool(x, **self.geometry_args(), alpha=jax.nn.sigmoid(self.alpha_logit[...]))


class RandomMixedPool(Windowed, Random):
    """Yu et al. (2014)'s mixed pooling, no parameters: in training (`deterministic=False`)
    `alpha ~ Bernoulli(1/2)` per output element from the "pool" stream, so each output is
    its window's max or its average; in evaluation the expectation `alpha = 1/2` (Yu et al.
    use the training frequencies instead)."""

    def __init__(self, window_shape: IntOrSeq, strides: IntOrSeq | None = None,
                 padding: Padding = 0, *, deterministic: bool = False,
                 rngs: nnx.Rngs | nnx.RngStream | None = None):
        super().__init__(window_shape, strides, padding)
        self.init_random(rngs, deterministic)

    def __call__(self, x: jax.Array, *, deterministic: bool | None = None,
                 rngs: nnx.Rngs | nnx.RngStream | jax.Array | None = None) -> jax.Array:
        key = self.key(deterministic, rngs)
        if key is None:
            return mixed_pool(x, **self.geometry_args(), alpha=0.5)
        alpha = uniform_noise(key, self.output_shape(jnp.shape(x))) < 0.5
        return mixed_pool(x, **self.geometry_args(), alpha=alpha.astype(jnp.float32))


class _Filtered(Windowed):
    """Base of the pools with window-shaped filters over `in_features` channels."""

    def __init__(self, in_features: int, window_shape: IntOrSeq, strides: IntOrSeq | None,
                 padding: Padding, per_feature: bool, spatial_dims: int | None):
        super().__init__(window_shape, strides, padding, spatial_dims=spatial_dims)
        self.in_features = check_in_features(in_features)
        self.per_feature = check_bool("per_feature", per_feature)

    def filter_shape(self, count: int | None = None) -> tuple[int, ...]:
        lead = () if count is None else (count,)
        return lead + self.window() + ((self.in_features,) if self.per_feature else ())


class GatedPool(_Filtered):
    """Gated max-average pooling (Lee et al. 2016, `pooling.gated_pool`): the gating mask
    `gate_weights` (`nnx.Param`, the window's shape `+ (in_features,)` with `per_feature`)
    starts at 0 (gate 1/2)."""

    def __init__(self, in_features: int, window_shape: IntOrSeq,
                 strides: IntOrSeq | None = None, padding: Padding = 0, *,
                 per_feature: bool = False, spatial_dims: int | None = None, rngs: nnx.Rngs):
        del rngs  # zeros; taken as every module with per-feature parameters takes it
        super().__init__(in_features, window_shape, strides, padding, per_feature, spatial_dims)
        self.gate_weights = nnx.Param(jnp.zeros(self.filter_shape(), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        self.check_input(jnp.shape(x))
        return gated_pool(x, **self.geometry_args(), gate_weights=self.gate_weights[...])


class TreePool(_Filtered):
    """Tree pooling (Lee et al. 2016, `pooling.tree_pool`): `num_leaves` (a power of two;
    the paper's level-2 tree has 2) learned pooling filters `leaf_filters` combined by
    `num_leaves - 1` learned gates `gate_weights`. Leaves start at the averaging filter
    `1/K` scaled by `1 + U[-1/2, 1/2)` noise from `rngs.params` (identical leaves would
    get identical gradients and the gates none), gates at 0."""

    def __init__(self, in_features: int, window_shape: IntOrSeq,
                 strides: IntOrSeq | None = None, padding: Padding = 0, *,
                 num_leaves: int = 2, per_feature: bool = False,
                 spatial_dims: int | None = None, rngs: nnx.Rngs):
        super().__init__(in_features, window_shape, strides, padding, per_feature, spatial_dims)
        if isinstance(num_leaves, bool) or not isinstance(num_leaves, int) or num_leaves < 2 or (
                num_leaves & (num_leaves - 1)):
            raise ValueError(f"num_leaves must be a power of two >= 2; got {num_leaves!r}")
        self.num_leaves = num_leaves
        taps = math.prod(self.window())
        noise = uniform_noise(rngs.params(), self.filter_shape(num_leaves))
        self.leaf_filters = nnx.Param((0.5 + noise) / taps)
        self.gate_weights = nnx.Param(jnp.zeros(self.filter_shape(num_leaves - 1), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        self.check_input(jnp.shape(x))
        return tree_pool(x, **self.geometry_args(), leaf_filters=self.leaf_filters[...],
                         gate_weights=self.gate_weights[...])
