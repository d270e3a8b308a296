"""`poolnets.linen`: one Linen class per `poolnets.nnx` pool, made by Flax's bridge, holding
the NNX module's parameters under the same paths and returning what the NNX module returns
given them (the cases of tests/nnx, whose NNX modules tests/nnx checks against the pure
functions), the random pools drawing from Linen's "pool" stream in training only.

Every comparison runs under one jit (one compilation for the whole table): the bridged
module builds its NNX module inside `apply`, so its program carries the (dead) parameter
initialisers and is compared by value, not by jaxpr.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "nnx"))
from nnx_cases import BY_NAME, X, build, flat_params, host_values  # noqa: E402

import poolnets.linen as plinen  # noqa: E402
import poolnets.nnx as pnnx  # noqa: E402

# The Linen form of each case's NNX module (tests/nnx/nnx_cases.py): the same arguments
# less in_features and rngs.
OURS = {
    "max": lambda: plinen.MaxPool(3, 2, 1, ceil_mode=True),
    "min": lambda: plinen.MinPool(2, 1, dilation=2),
    "avg": lambda: plinen.AvgPool(3, 2, 1, count_include_pad=False),
    "lp": lambda: plinen.LPPool(2, p=3.0),
    "lp_learned": lambda: plinen.LPPool(2, learnable=True, per_feature=True),
    "adaptive_avg": lambda: plinen.AdaptiveAvgPool((4, None)),
    "adaptive_max": lambda: plinen.AdaptiveMaxPool(3, return_indices=True),
    "global_avg": lambda: plinen.GlobalAvgPool(),
    "global_max": lambda: plinen.GlobalMaxPool(keepdims=True),
    "global_avgmax": lambda: plinen.GlobalAvgMaxPool(),
    "global_catavgmax": lambda: plinen.GlobalCatAvgMaxPool(),
    "spp": lambda: plinen.SpatialPyramidPool((1, 3), mode="avg"),
    "gem": lambda: plinen.GeMPool(2, per_feature=True),
    "gem_fixed": lambda: plinen.GeMPool(2, p=2.5, learnable=False),
    "global_gem": lambda: plinen.GlobalGeMPool(),
    "lse": lambda: plinen.LSEPool(2, 1, 1, learnable=True),
    "global_lse": lambda: plinen.GlobalLSEPool(),
    "soft": lambda: plinen.SoftPool(2),
    "global_soft": lambda: plinen.GlobalSoftPool(),
    "median": lambda: plinen.MedianPool(3, 2, 1),
    "lip": lambda: plinen.LIPPool((2, 2)),
    "mixed": lambda: plinen.MixedPool(2),
    "mixed_random": lambda: plinen.RandomMixedPool(2),
    "gated": lambda: plinen.GatedPool(2, per_feature=True, spatial_dims=2),
    "tree": lambda: plinen.TreePool((2, 2), num_leaves=4),
    "stochastic": lambda: plinen.StochasticPool(2),
    "fractional": lambda: plinen.FractionalMaxPool(ratio=2 ** 0.5),
    "fractional_size": lambda: plinen.FractionalMaxPool((4, 5), overlapping=True),
    "blur": lambda: plinen.BlurPool(filter_size=4, pad_mode="zero"),
    "max_blur": lambda: plinen.MaxBlurPool(3, padding=1),
    "conv_blur": lambda: plinen.ConvBlurPool(4, (3, 3)),
    "spectral": lambda: plinen.SpectralPool((3, None)),
    "wavelet": lambda: plinen.WaveletPool(levels=2, orthonormal=True),
    "attention": lambda: plinen.AttentionPool((6, 6), num_heads=3, output_dim=5),
    "map": lambda: plinen.MAPHead(mlp_dim=8, num_queries=2),
}

RANDOM = ("mixed_random", "stochastic", "fractional", "fractional_size")
# LLVM level 0 only shortens the compiles.
quick_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})

def test_every_nnx_pool_has_a_linen_class():
    exported = {n for n, v in vars(pnnx).items()
                if isinstance(v, type) and issubclass(v, pnnx.Pool) and v is not pnnx.Pool}
    assert set(plinen.__all__) == exported
    for name in exported:
        cls = getattr(plinen, name)
        assert issubclass(cls, plinen.Bridged) and cls.nnx_class is getattr(pnnx, name)
    assert {type(OURS[n]()).__name__ for n in OURS} <= exported


def test_equal_to_the_nnx_modules_with_the_same_parameters():
    """Evaluation mode (`train=False`) for every case: the bridged module, given host-drawn
    variables at its own init shapes, returns what the case's NNX module (in evaluation
    mode) returns given the same parameters under the same paths."""
    runs = []  # (name, bridged module, its variables, the NNX module)
    keys = {"params": jax.random.key(0), "pool": jax.random.key(1)}
    for name, make in OURS.items():
        ours = make()
        variables = host_values(jax.eval_shape(lambda o=ours: o.init(keys, X, train=False)))
        module = build(BY_NAME[name], flat_params(variables.get("params", {})) or None)
        if hasattr(module, "deterministic"):
            module.eval()
        runs.append((name, ours, variables, module))

    def outputs(x):
        return [(ours.apply(v, x, train=False), module(x)) for _, ours, v, module in runs]

    results = quick_jit(outputs)(X)
    for (name, *_), (ours, theirs) in zip(runs, results, strict=True):
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6, err_msg=name)




def test_random_pools_follow_train_and_the_pool_stream():
    """Evaluation ignores the key; training draws from the "pool" stream: the same key
    gives the same output, another key another."""
    pools = [OURS[name]() for name in RANDOM]

    def draw(k, train):
        return [pool.apply({}, X, train=train, rngs={"pool": k}) for pool in pools]

    @quick_jit
    def calls(k1, k2):  # one compile
        return (draw(k1, False), draw(k2, False)), (draw(k1, True), draw(k1, True),
                                                    draw(k2, True))

    evaluations, trainings = calls(jax.random.key(1), jax.random.key(2))
    evaluations, trainings = zip(*evaluations, strict=True), zip(*trainings, strict=True)
    for name, (a, b), (c, d, e) in zip(RANDOM, evaluations, trainings, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)
        np.testing.assert_array_equal(c, d, err_msg=name)
        assert not np.array_equal(c, e), name


def test_output_shape_and_argument_errors():
    assert plinen.MaxPool(3, 2, 1).output_shape((2, 7, 9, 3)) == (2, 4, 5, 3)
    assert plinen.LIPPool((2, 2)).output_spatial((6, 6)) == (3, 3)
    with pytest.raises(TypeError, match="in_features is the input's last dim"):
        plinen.GatedPool(2, in_features=3)
    with pytest.raises(ValueError, match="strides"):
        plinen.MaxPool(2, 0)  # when built, before any init
    with pytest.raises(ValueError, match="ratio"):
        plinen.FractionalMaxPool(ratio=3.0)
    with pytest.raises(ValueError, match="num_heads"):  # per-feature: at the first call
        plinen.MAPHead(num_heads=2).init(jax.random.key(0), X)


def test_inside_a_linen_model():
    """A generated class is an ordinary Linen submodule: its parameters nest under its name."""
    import flax.linen as nn

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            x = plinen.GeMPool(2, per_feature=True, name="gem")(x, train=train)
            return plinen.StochasticPool(3, name="sto")(x, train=train)

    variables = jax.eval_shape(lambda: Net().init(jax.random.key(0), X))
    assert jax.tree.map(lambda s: s.shape, variables) == {"params": {"gem": {"p": (3,)}}}
