"""Every `poolnets.nnx` module computes its pure `poolnets.pooling` function and reports the
shape it returns (the attention heads, which no pure function has, are recomputed in NumPy
by test_nnx_attention.py).

"Same program" compares the traced jaxprs (equations and constants): identical programs
give identical outputs on every input, and tracing compiles nothing, which keeps this
file fast.
"""

from __future__ import annotations

import jax
import pytest
from nnx_cases import CASES, X_ODD, assert_same_program, build

import poolnets.nnx as pnnx
from poolnets import pooling as P


def _eval_mode(module):
    if hasattr(module, "deterministic"):
        module.eval()
    return module


@pytest.mark.parametrize("case", [c for c in CASES if c.pure], ids=lambda c: c.name)
def test_module_is_its_pure_function(case):
    module = _eval_mode(build(case))
    pure = case.pure(module)
    assert_same_program(lambda x: module(x, *case.extra), lambda x: pure(x, *case.extra), case.x)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_output_shape_is_the_shape_returned(case):
    module = _eval_mode(build(case))
    for x in (case.x, X_ODD) if case.odd_input else (case.x,):
        out = jax.eval_shape(lambda v: module(v, *case.extra), x)
        shape = (out[0] if isinstance(out, tuple) else out).shape
        assert module.output_shape(x.shape) == shape
        assert module.output_spatial(x.shape[1:-1]) == shape[1:-1]


# What each public function of poolnets.pooling is a module of.
MODULE_OF = {
    "max_pool": "MaxPool", "max_pool_with_indices": "MaxPool", "min_pool": "MinPool",
    "avg_pool": "AvgPool", "sum_pool": "SumPool", "lp_pool": "LPPool", "max_unpool": "MaxUnpool",
    "adaptive_avg_pool": "AdaptiveAvgPool", "adaptive_max_pool": "AdaptiveMaxPool",
    "global_avg_pool": "GlobalAvgPool", "global_max_pool": "GlobalMaxPool",
    "spatial_pyramid_pool": "SpatialPyramidPool", "stochastic_pool": "StochasticPool",
    "fractional_max_pool": "FractionalMaxPool", "mixed_pool": "MixedPool",
    "gated_pool": "GatedPool", "tree_pool": "TreePool", "gem_pool": "GeMPool",
    "global_gem_pool": "GlobalGeMPool", "lse_pool": "LSEPool", "global_lse_pool": "GlobalLSEPool",
    "soft_pool": "SoftPool", "global_soft_pool": "GlobalSoftPool", "lip_pool": "LIPPool",
    "median_pool": "MedianPool", "blur_pool": "BlurPool", "max_blur_pool": "MaxBlurPool",
    "avg_blur_pool": "AvgBlurPool", "conv_blur_pool": "ConvBlurPool",
    "spectral_pool": "SpectralPool", "wavelet_pool": "WaveletPool", "roi_pool": "RoIPool",
    "roi_align": "RoIAlign",
}
# `pool(x, init_value, reduce_fn, ...)` builds custom reductions; it is no pool of its own.
NOT_A_POOL = {"pool"}


def test_every_pooling_function_has_a_module():
    functions = {name for name, value in vars(P).items()
                 if callable(value) and not isinstance(value, type) and not name.startswith("_")}
    assert functions == set(MODULE_OF) | NOT_A_POOL
    assert all(isinstance(getattr(pnnx, name), type) for name in MODULE_OF.values())


def test_every_public_module_has_a_case():
    """The case table covers every exported pool class, so no module goes untested."""
    exported = {name for name in dir(pnnx) if isinstance(getattr(pnnx, name), type)
                and issubclass(getattr(pnnx, name), pnnx.Pool) and name != "Pool"}
    covered = {type(build(case)).__name__ for case in CASES}
    assert exported == covered
