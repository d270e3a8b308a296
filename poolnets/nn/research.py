"""Flax (linen) modules for the research pools, owning their learnable parameters.

Windowed modules take `window_shape`, `strides` (None: = window) and `padding` as in
`poolnets.pooling`, and are called as `module(x, train=...)` on `(*batch, *spatial, C)`.
Random pools draw from the "pool" RNG stream when `train=True` and are deterministic
otherwise (`rngs={"pool": key}` in `apply`). Parameters are float32; inputs keep their
dtype. Formulas and citations are in the wrapped functions' docstrings.
`from_geometry(Module)` turns a module into a registry factory for `poolnets.nn.registry`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from poolnets import pooling
from poolnets.pooling.window_taps import research_geometry, uniform_noise

Shape = int | Sequence[int]
Padding = Any


def _window(x: jax.Array, window_shape: Shape) -> tuple[int, ...]:
    """Tuple window (parameter shapes need it); an int means `x.ndim - 2` spatial dims."""
    if isinstance(window_shape, int):
        return (window_shape,) * (x.ndim - 2)
    return tuple(window_shape)


class _Windowed(nn.Module):
    window_shape: Shape = 2
    strides: Shape | None = None
    padding: Padding = 0

    def geometry(self) -> dict[str, Any]:
        return dict(window_shape=self.window_shape, strides=self.strides, padding=self.padding)


class MixedPool(_Windowed):
    """`alpha * max + (1 - alpha) * avg` (`pooling.mixed_pool`).

    Default: learned `alpha = sigmoid(alpha_logit)` (Lee et al. 2016), one per layer or per
    feature (`per_feature`), initialised at 1/2. `random=True`: Yu et al. (2014)'s mixed
    pooling, no parameters; in training `alpha ~ Bernoulli(1/2)` per output element from the
    "pool" stream, in evaluation the expectation `alpha = 1/2` (Yu et al. use the training
    frequencies instead).
    """

    per_feature: bool = False
    random: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        if self.random:
            if not train:
                return pooling.mixed_pool(x, **self.geometry(), alpha=0.5)
            geo = research_geometry(x, self.window_shape, self.strides, self.padding)
            shape = x.shape[: geo.num_batch_dims] + geo.output_shape + x.shape[-1:]
            alpha = uniform_noise(self.make_rng("pool"), shape) < 0.5
            return pooling.mixed_pool(x, **self.geometry(), alpha=alpha.astype(jnp.float32))
        shape = (x.shape[-1],) if self.per_feature else ()
        logit = self.param("alpha_logit", nn.initializers.zeros, shape, jnp.float32)
        return pooling.mixed_pool(x, **self.geometry(), alpha=jax.nn.sigmoid(logit))


def _filter_shape(x, window_shape, per_feature, count=None) -> tuple[int, ...]:
    lead = () if count is None else (count,)
    return lead + _window(x, window_shape) + ((x.shape[-1],) if per_feature else ())


class GatedPool(_Windowed):
    """Gated max-average pooling (Lee et al. 2016, `pooling.gated_pool`): gating mask
    `gate_weights` of the window's shape (`+ (C,)` with `per_feature`), initialised at 0
    (gate 1/2)."""

    per_feature: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train
        shape = _filter_shape(x, self.window_shape, self.per_feature)
        gate = self.param("gate_weights", nn.initializers.zeros, shape, jnp.float32)
        return pooling.gated_pool(x, **self.geometry(), gate_weights=gate)


def _averaging_init(taps: int):
    """Averaging filters `1/K` scaled by `1 + U[-1/2, 1/2)` noise: without it identical
    leaves receive identical gradients and the gates none."""

    def init(key, shape, dtype=jnp.float32):
        noise = uniform_noise(key, shape, dtype)
        return (0.5 + noise) / taps

    return init


class TreePool(_Windowed):
    """Tree pooling (Lee et al. 2016, `pooling.tree_pool`): `num_leaves` (a power of two;
    the paper's level-2 tree has 2) learned pooling filters combined by `num_leaves - 1`
    learned gates. Leaves start near the average filter, gates at 0."""

    num_leaves: int = 2
    per_feature: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train
        n = self.num_leaves
        leaf_shape = _filter_shape(x, self.window_shape, self.per_feature, n)
        gate_shape = _filter_shape(x, self.window_shape, self.per_feature, n - 1)
        taps = math.prod(_window(x, self.window_shape))
        leaves = self.param("leaf_filters", _averaging_init(taps), leaf_shape, jnp.float32)
        gates = self.param("gate_weights", nn.initializers.zeros, gate_shape, jnp.float32)
        return pooling.tree_pool(x, **self.geometry(), leaf_filters=leaves, gate_weights=gates)


class GeMPool(_Windowed):
    """GeM pooling (Radenovic et al. 2018, `pooling.gem_pool`) with learnable `p` (one, or
    one per feature), initialised at `p_init` and used as `max(p, p_min)` so that training
    cannot push it to 0; inputs are clamped at `eps`. `learn_p=False` keeps `p_init`."""

    p_init: float = 3.0
    p_min: float = 1.0
    eps: float = 1e-6
    learn_p: bool = True
    per_feature: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train
        return pooling.gem_pool(x, **self.geometry(), p=_gem_p(self, x), eps=self.eps)


def _gem_p(module: nn.Module, x: jax.Array) -> jax.Array | float:
    if not module.learn_p:
        return module.p_init
    shape = (x.shape[-1],) if module.per_feature else ()
    p = module.param("p", nn.initializers.constant(module.p_init), shape, jnp.float32)
    return jnp.maximum(p, module.p_min)


class GlobalGeMPool(nn.Module):
    """Global GeM head (`pooling.global_gem_pool`), `(N, *spatial, C) -> (N, C)`, with the
    learnable `p` of `GeMPool` (Radenovic et al.'s retrieval descriptor)."""

    p_init: float = 3.0
    p_min: float = 1.0
    eps: float = 1e-6
    learn_p: bool = True
    per_feature: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train
        return pooling.global_gem_pool(x, p=_gem_p(self, x), eps=self.eps)


class LSEPool(_Windowed):
    """Log-sum-exp pooling (Pinheiro & Collobert 2015, `pooling.lse_pool`) with sharpness
    `r = r_init`, or learned as `r = exp(log_r)` (always positive) with `learn_r`."""

    r_init: float = 1.0
    learn_r: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train
        r = self.r_init
        if self.learn_r:
            r = jnp.exp(self.param("log_r", nn.initializers.constant(math.log(self.r_init)),
                                   (), jnp.float32))
        return pooling.lse_pool(x, **self.geometry(), r=r)


class SoftPool(_Windowed):
    """SoftPool (Stergiou et al. 2021, `pooling.soft_pool`); no parameters."""

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train
        return pooling.soft_pool(x, **self.geometry())


class MedianPool(_Windowed):
    """Median pooling (`pooling.median_pool`, lower median); no parameters."""

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train
        return pooling.median_pool(x, **self.geometry())


class LIPPool(_Windowed):
    """Local importance-based pooling (Gao, Wang & Wu 2019, `pooling.lip_pool`).

    Importance logits come from a small fully convolutional branch, as in the authors'
    simplified LIP: `logits = coeff * sigmoid(InstanceNorm(conv_k(x)))` with a `k`-wide
    'SAME' convolution keeping the C channels (no bias) and `coeff = 12` (their value;
    it bounds the weight ratio by e^12). The conv runs in `dtype`.
    """

    logit_kernel: int = 3
    coeff: float = 12.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train
        n = len(_window(x, self.window_shape))
        h = nn.Conv(x.shape[-1], (self.logit_kernel,) * n, padding="SAME", use_bias=False,
                    dtype=self.dtype, name="logit_conv")(x)
        h = nn.InstanceNorm(dtype=self.dtype, name="logit_norm")(h)
        logits = self.coeff * jax.nn.sigmoid(h.astype(jnp.float32))
        return pooling.lip_pool(x, logits, **self.geometry())


class StochasticPool(_Windowed):
    """Stochastic pooling (Zeiler & Fergus 2013, `pooling.stochastic_pool`): samples from
    the "pool" stream in training, the probability-weighted average otherwise."""

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        key = self.make_rng("pool") if train else None
        return pooling.stochastic_pool(x, **self.geometry(), key=key)


class FractionalMaxPool(nn.Module):
    """Fractional max pooling (Graham 2014, `pooling.fractional_max_pool`).

    Output size per spatial dim: `output_size` (an entry None keeps the dim), or
    `ceil(L / ratio)` with `ratio` in [1, 2] (one value, or one per spatial dim; Graham's
    FMP uses sqrt(2)). Regions are drawn from the "pool" stream in training; evaluation uses
    the fixed pseudo-random regions of `key=None` (Graham instead averages several random
    draws at test time). `overlapping`, `pseudo_random`, `kernel_size` as in the function.
    """

    output_size: Sequence[int | None] | None = None
    ratio: float | Sequence[float] | None = None
    overlapping: bool = False
    pseudo_random: bool = False
    kernel_size: Shape | None = None
    spatial_dims: int | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        if (self.output_size is None) == (self.ratio is None):
            raise ValueError(
                "FractionalMaxPool needs exactly one of output_size and ratio; got "
                f"output_size={self.output_size!r}, ratio={self.ratio!r}"
            )
        size = self.output_size
        if size is None:
            n = self.spatial_dims or x.ndim - 2
            ratios = np.broadcast_to(np.asarray(self.ratio, float), (n,))
            if not np.all((ratios >= 1) & (ratios <= 2)):
                raise ValueError(f"ratio must lie in [1, 2]; got ratio={self.ratio!r}")
            size = tuple(math.ceil(length / r) for length, r in zip(x.shape[-1 - n:-1], ratios,
                                                                    strict=True))
        return pooling.fractional_max_pool(
            x, size, key=self.make_rng("pool") if train else None, overlapping=self.overlapping,
            pseudo_random=self.pseudo_random, kernel_size=self.kernel_size)


def from_geometry(module: type[nn.Module], **fields: Any):
    """Registry factory `(geometry, dtype, name) -> module(window, strides, padding)`."""
    takes_dtype = "dtype" in {f.name for f in dataclasses.fields(module)}

    def factory(geometry, dtype, name=None):
        extra = {"dtype": dtype} if takes_dtype else {}
        return module(window_shape=geometry.window, strides=geometry.strides,
                      padding=geometry.padding, name=name, **fields, **extra)

    return factory


def fractional_factory(exponent: float = 0.5, **fields: Any):
    """Registry factory for `FractionalMaxPool` resizing each dim by `ratio = stride **
    exponent` (the model's window and padding are unused). The default turns every
    stride-2 point into Graham's FMP sqrt(2) and leaves stride-1 points' size alone."""

    def factory(geometry, dtype, name=None):
        del dtype
        ratio = tuple(s**exponent for s in geometry.strides)
        return FractionalMaxPool(ratio=ratio, spatial_dims=geometry.spatial_dims, name=name,
                                 **fields)

    return factory


def ratio_length(exponent: float = 0.5):
    """Registry length rule `ceil(n / stride ** exponent)` matching `fractional_factory`."""

    def length(n: int, window: int, stride: int, padding: tuple[int, int]) -> int:
        del window, padding
        return math.ceil(n / stride**exponent)

    return length
