"""One case per `poolnets.nnx` module: how to build it and the pure `poolnets.pooling` call it
must equal (given the module's parameters), for tests/nnx and tests/linen. Modules with
parameters are built abstractly (`nnx.eval_shape`)
and given host-drawn values: running Flax's initialisers op by op costs seconds here, and
the values do not matter to parity."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import poolnets.nnx as pnnx
from poolnets import pooling as P
from poolnets.pooling.window_taps import uniform_noise

# Positive inputs: LPPool with a learned (non-integer) p is NaN on negative inputs.
X = np.abs(np.random.default_rng(0).normal(size=(2, 6, 6, 3))).astype(np.float32) + 0.1
# A second, odd-sized input for the shape rules.
X_ODD = np.abs(np.random.default_rng(1).normal(size=(1, 7, 9, 3))).astype(np.float32) + 0.1
# MaxUnpool's input: X's 2 x 2 / 2 samples at each window's first element, and their flat
# spatial indices (as max_pool_with_indices returns them).
POOLED = X[:, ::2, ::2, :]
_ROWS, _COLS = np.meshgrid(np.arange(0, 6, 2), np.arange(0, 6, 2), indexing="ij")
INDICES = np.broadcast_to((_ROWS * 6 + _COLS)[None, :, :, None], POOLED.shape).astype(np.int32)
BOXES = np.array([[1, 0.5, 1.0, 4.5, 3.0]], np.float32)  # (batch_index, x1, y1, x2, y2)


@dataclasses.dataclass(frozen=True)
class Case:
    """`make(rngs)` builds the module; `pure(module)` is the function it must compute
    (None for the attention heads, which no pure function has: test_nnx_attention.py
    recomputes them in NumPy)."""

    name: str
    make: Callable[[nnx.Rngs], pnnx.Pool]
    pure: Callable[[Any], Callable[[jax.Array], Any]] | None
    odd_input: bool = True  # AttentionPool's embedding fixes its input size
    x: np.ndarray = dataclasses.field(default_factory=lambda: X)  # the call's first argument
    extra: tuple = ()  # further positional arguments of the call (indices, boxes)


def _p(module, name):
    return getattr(module, name)[...]


CASES = [
    Case("max", lambda r: pnnx.MaxPool(3, 2, 1, ceil_mode=True),
         lambda m: lambda x: P.max_pool(x, 3, 2, 1, ceil_mode=True)),
    Case("max_indices", lambda r: pnnx.MaxPool((2, 2), return_indices=True),
         lambda m: lambda x: P.max_pool_with_indices(x, (2, 2))),
    Case("max_unpool", lambda r: pnnx.MaxUnpool(2),
         lambda m: lambda v, i: P.max_unpool(v, i, 2), odd_input=False, x=POOLED,
         extra=(INDICES,)),
    Case("max_dilated", lambda r: pnnx.MaxPool((3, 3), 2, 1, dilation=(1, 2), ceil_mode=True),
         lambda m: lambda x: P.max_pool(x, (3, 3), 2, 1, dilation=(1, 2), ceil_mode=True)),
    Case("min", lambda r: pnnx.MinPool(2, 1, dilation=2),
         lambda m: lambda x: P.min_pool(x, 2, 1, dilation=2)),
    Case("min_same", lambda r: pnnx.MinPool((3, 3), 2, padding="SAME"),
         lambda m: lambda x: P.min_pool(x, (3, 3), 2, padding="SAME")),
    Case("avg", lambda r: pnnx.AvgPool(3, 2, 1, count_include_pad=False),
         lambda m: lambda x: P.avg_pool(x, 3, 2, 1, count_include_pad=False)),
    Case("avg_divisor", lambda r: pnnx.AvgPool((3, 3), 2, divisor_override=3),
         lambda m: lambda x: P.avg_pool(x, (3, 3), 2, divisor_override=3)),
    Case("sum", lambda r: pnnx.SumPool(2, padding="SAME"),
         lambda m: lambda x: P.sum_pool(x, 2, padding="SAME")),
    Case("lp", lambda r: pnnx.LPPool(2, p=3.0), lambda m: lambda x: P.lp_pool(x, 3.0, 2)),
    Case("lp_learned", lambda r: pnnx.LPPool(2, learnable=True, per_feature=True, in_features=3),
         lambda m: lambda x: P.lp_pool(x, 1.0 + jax.nn.softplus(_p(m, "p_raw")), 2)),
    Case("adaptive_avg", lambda r: pnnx.AdaptiveAvgPool((4, None)),
         lambda m: lambda x: P.adaptive_avg_pool(x, (4, None))),
    Case("adaptive_max", lambda r: pnnx.AdaptiveMaxPool(3, return_indices=True),
         lambda m: lambda x: P.adaptive_max_pool(x, 3, return_indices=True)),
    Case("global_avg", lambda r: pnnx.GlobalAvgPool(), lambda m: P.global_avg_pool),
    Case("global_max", lambda r: pnnx.GlobalMaxPool(keepdims=True),
         lambda m: lambda x: P.global_max_pool(x, keepdims=True)),
    Case("global_avgmax", lambda r: pnnx.GlobalAvgMaxPool(),
         lambda m: lambda x: 0.5 * (P.global_avg_pool(x) + P.global_max_pool(x))),
    Case("global_catavgmax", lambda r: pnnx.GlobalCatAvgMaxPool(),
         lambda m: lambda x: jnp.concatenate([P.global_avg_pool(x), P.global_max_pool(x)], -1)),
    Case("spp", lambda r: pnnx.SpatialPyramidPool((1, 3), mode="avg"),
         lambda m: lambda x: P.spatial_pyramid_pool(x, (1, 3), mode="avg")),
    Case("spp_default", lambda r: pnnx.SpatialPyramidPool(), lambda m: P.spatial_pyramid_pool),
    Case("gem", lambda r: pnnx.GeMPool(2, per_feature=True, in_features=3),
         lambda m: lambda x: P.gem_pool(x, 2, p=jnp.maximum(_p(m, "p"), 1.0), eps=1e-6)),
    Case("gem_fixed", lambda r: pnnx.GeMPool(2, p=2.5, learnable=False),
         lambda m: lambda x: P.gem_pool(x, 2, p=2.5, eps=1e-6)),
    Case("gem_strided", lambda r: pnnx.GeMPool(3, 2, 1),
         lambda m: lambda x: P.gem_pool(x, 3, 2, 1, p=jnp.maximum(_p(m, "p"), 1.0), eps=1e-6)),
    Case("global_gem", lambda r: pnnx.GlobalGeMPool(),
         lambda m: lambda x: P.global_gem_pool(x, p=jnp.maximum(_p(m, "p"), 1.0), eps=1e-6)),
    Case("global_gem_per_feature", lambda r: pnnx.GlobalGeMPool(per_feature=True, in_features=3),
         lambda m: lambda x: P.global_gem_pool(x, p=jnp.maximum(_p(m, "p"), 1.0), eps=1e-6)),
    Case("lse", lambda r: pnnx.LSEPool(2, 1, 1, learnable=True),
         lambda m: lambda x: P.lse_pool(x, 2, 1, 1, r=jnp.exp(_p(m, "log_r")))),
    Case("global_lse", lambda r: pnnx.GlobalLSEPool(), lambda m: P.global_lse_pool),
    Case("soft", lambda r: pnnx.SoftPool(2), lambda m: lambda x: P.soft_pool(x, 2)),
    Case("global_soft", lambda r: pnnx.GlobalSoftPool(), lambda m: P.global_soft_pool),
    Case("median", lambda r: pnnx.MedianPool(3, 2, 1),
         lambda m: lambda x: P.median_pool(x, 3, 2, 1)),
    Case("lip", lambda r: pnnx.LIPPool(3, (2, 2), rngs=r),
         lambda m: lambda x: P.lip_pool(
             x, 12.0 * jax.nn.sigmoid(m.logit_norm(m.logit_conv(x))), (2, 2))),
    Case("mixed", lambda r: pnnx.MixedPool(2),
         lambda m: lambda x: P.mixed_pool(x, 2, alpha=jax.nn.sigmoid(_p(m, "alpha_logit")))),
    Case("mixed_per_feature", lambda r: pnnx.MixedPool(2, per_feature=True, in_features=3),
         lambda m: lambda x: P.mixed_pool(x, 2, alpha=jax.nn.sigmoid(_p(m, "alpha_logit")))),
    Case("mixed_random", lambda r: pnnx.RandomMixedPool(2, rngs=r),
         lambda m: lambda x: P.mixed_pool(x, 2, alpha=0.5)),
    Case("gated", lambda r: pnnx.GatedPool(3, 2, per_feature=True, spatial_dims=2, rngs=r),
         lambda m: lambda x: P.gated_pool(x, (2, 2), gate_weights=_p(m, "gate_weights"))),
    Case("tree", lambda r: pnnx.TreePool(3, (2, 2), num_leaves=4, rngs=r),
         lambda m: lambda x: P.tree_pool(x, (2, 2), leaf_filters=_p(m, "leaf_filters"),
                                         gate_weights=_p(m, "gate_weights"))),
    Case("stochastic", lambda r: pnnx.StochasticPool(2, rngs=r),
         lambda m: lambda x: P.stochastic_pool(x, 2)),
    Case("fractional", lambda r: pnnx.FractionalMaxPool(ratio=2 ** 0.5, rngs=r),
         lambda m: lambda x: P.fractional_max_pool(
             x, tuple(int(np.ceil(n / 2 ** 0.5)) for n in x.shape[1:-1]))),
    Case("fractional_size", lambda r: pnnx.FractionalMaxPool((4, 5), overlapping=True, rngs=r),
         lambda m: lambda x: P.fractional_max_pool(x, (4, 5), overlapping=True)),
    Case("blur", lambda r: pnnx.BlurPool(filter_size=4, pad_mode="zero"),
         lambda m: lambda x: P.blur_pool(x, filter_size=4, pad_mode="zero")),
    Case("max_blur", lambda r: pnnx.MaxBlurPool(3, padding=1),
         lambda m: lambda x: P.max_blur_pool(x, 3, padding=1)),
    Case("avg_blur", lambda r: pnnx.AvgBlurPool(2), lambda m: lambda x: P.avg_blur_pool(x, 2)),
    Case("conv_blur", lambda r: pnnx.ConvBlurPool(3, 4, (3, 3), rngs=r),
         lambda m: lambda x: P.conv_blur_pool(x, _p(m, "kernel"), _p(m, "bias"),
                                              activation=jax.nn.relu)),
    Case("spectral", lambda r: pnnx.SpectralPool((3, None)),
         lambda m: lambda x: P.spectral_pool(x, (3, None))),
    Case("wavelet", lambda r: pnnx.WaveletPool(levels=2, orthonormal=True),
         lambda m: lambda x: P.wavelet_pool(x, levels=2, orthonormal=True)),
    Case("roi_pool", lambda r: pnnx.RoIPool((2, 3), spatial_scale=0.5),
         lambda m: lambda f, b: P.roi_pool(f, b, (2, 3), spatial_scale=0.5), odd_input=False,
         extra=(BOXES,)),
    Case("roi_align", lambda r: pnnx.RoIAlign(2, sampling_ratio=2, aligned=True),
         lambda m: lambda f, b: P.roi_align(f, b, 2, sampling_ratio=2, aligned=True),
         odd_input=False, extra=(BOXES,)),
    Case("attention", lambda r: pnnx.AttentionPool(3, (6, 6), num_heads=3, output_dim=5, rngs=r),
         None, odd_input=False),
    Case("map", lambda r: pnnx.MAPHead(3, mlp_dim=8, num_queries=2, rngs=r), None),
]
BY_NAME = {case.name: case for case in CASES}


def host_values(shapes: Any, seed: int = 4) -> Any:
    """Arrays of `shapes` (a tree of shape/dtype structs) drawn on the host."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(0.3 * rng.normal(size=s.shape), s.dtype), shapes)


def flat_params(tree: Any) -> dict[tuple[str, ...], Any]:
    return flax.traverse_util.flatten_dict(flax.core.unfreeze(tree))


def with_host_params(module: nnx.Module, seed: int = 4, params: dict | None = None
                     ) -> nnx.Module:
    """`module` (built abstractly, by `nnx.eval_shape`) given `params` (flat paths, which
    must be the module's) or host-drawn values."""
    flat = dict(nnx.to_flat_state(nnx.state(module, nnx.Param)))
    values = (host_values({k: v.get_value() for k, v in flat.items()}, seed) if params is None
              else params)
    assert set(values) == set(flat), (sorted(values), sorted(flat))
    for path, variable in flat.items():
        variable.set_value(values[path])
    nnx.update(module, nnx.from_flat_state(flat))
    return module


def build(case: Case, params: dict | None = None) -> pnnx.Pool:
    """The case's module; with parameters, built abstractly and given `params` (flat
    paths) or host-drawn values."""
    module = nnx.eval_shape(lambda: case.make(nnx.Rngs(0)))
    if not nnx.state(module, nnx.Param):
        return case.make(nnx.Rngs(0))  # cheap to build, and its RNG streams are real
    return with_host_params(module, params=params)


def uniform_alpha(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """`RandomMixedPool`'s training alpha for `key` (its documented draw)."""
    return (uniform_noise(key, shape) < 0.5).astype(jnp.float32)


def assert_same_program(f: Callable, g: Callable, *args: Any) -> None:
    """`f` and `g` trace to the same jaxpr with equal constants, so they compute the same
    values on every input (tracing compiles nothing)."""
    ours, theirs = jax.make_jaxpr(f)(*args), jax.make_jaxpr(g)(*args)
    assert str(ours.jaxpr) == str(theirs.jaxpr)
    assert len(ours.consts) == len(theirs.consts)
    for a, b in zip(ours.consts, theirs.consts, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
