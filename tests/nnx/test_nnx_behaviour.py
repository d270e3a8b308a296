"""`poolnets.nnx` modules as NNX modules: the signature rule, parameters as `nnx.Param`,
random pools' modes and streams, gradients through `nnx.split`/`merge`, `nnx.jit`, and
clear errors for bad arguments (when built) and bad inputs."""

from __future__ import annotations

import functools
import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from nnx_cases import (
    BY_NAME,
    CASES,
    X_ODD,
    X,
    assert_same_program,
    build,
    uniform_alpha,
    with_host_params,
)

import poolnets.nnx as pnnx
from poolnets import pooling as P

RANDOM = {"StochasticPool", "FractionalMaxPool", "RandomMixedPool"}
PER_FEATURE = {"LIPPool", "GatedPool", "TreePool", "ConvBlurPool", "AttentionPool", "MAPHead"}
SCALAR_LEARNABLE = {"GeMPool", "GlobalGeMPool", "LSEPool", "LPPool", "MixedPool"}
EXPORTED = {name: cls for name, cls in vars(pnnx).items()
            if isinstance(cls, type) and issubclass(cls, pnnx.Pool) and cls is not pnnx.Pool}


@pytest.mark.parametrize("name", sorted(EXPORTED))
def test_signature_rule(name):
    params = inspect.signature(EXPORTED[name].__init__).parameters
    if name in RANDOM:
        assert params["rngs"].default is None and params["deterministic"].default is False
    elif name in PER_FEATURE:
        assert list(params)[1] == "in_features"
        assert params["rngs"].kind is inspect.Parameter.KEYWORD_ONLY
        assert params["rngs"].default is inspect.Parameter.empty
    elif name in SCALAR_LEARNABLE:
        assert params["rngs"].default is None and "deterministic" not in params
    else:  # deterministic and parameter-free: geometry only
        assert "rngs" not in params and "deterministic" not in params


def test_learnable_quantities_are_params_and_parameter_free_pools_have_none():
    for case in CASES:
        module = nnx.eval_shape(lambda c=case: c.make(nnx.Rngs(0)))
        has_params = bool(nnx.state(module, nnx.Param))
        learnable = type(module).__name__ in PER_FEATURE | SCALAR_LEARNABLE
        fixed = case.name in ("lp", "gem_fixed")  # learnable=False
        assert has_params == (learnable and not fixed), case.name


def test_initial_values():
    rngs = nnx.Rngs(0)
    assert float(pnnx.GeMPool(2).p[...]) == 3.0  # Radenovic et al.'s starting exponent
    assert float(pnnx.GeMPool(2, p=2.5).p[...]) == 2.5
    assert float(pnnx.MixedPool(2).alpha_logit[...]) == 0.0
    assert math.isclose(math.exp(pnnx.LSEPool(2, r=3.0, learnable=True).log_r[...]), 3.0,
                        rel_tol=1e-6)
    lp = pnnx.LPPool(2, p=3.0, learnable=True, per_feature=True, in_features=4)
    np.testing.assert_allclose(1.0 + np.logaddexp(0.0, lp.p_raw[...]), np.full(4, 3.0), rtol=1e-6)
    scalar = pnnx.LPPool(2, p=2.5, learnable=True).p_raw[...]
    assert scalar.shape == () and math.isclose(1.0 + np.logaddexp(0.0, scalar), 2.5, rel_tol=1e-6)
    gated = pnnx.GatedPool(3, (2, 2), per_feature=True, rngs=rngs)
    assert gated.gate_weights[...].shape == (2, 2, 3) and not np.any(gated.gate_weights[...])
    tree = pnnx.TreePool(3, 2, spatial_dims=2, num_leaves=4, rngs=rngs)
    leaves = np.asarray(tree.leaf_filters[...])
    assert leaves.shape == (4, 2, 2) and np.all((leaves >= 0.5 / 4) & (leaves < 1.5 / 4))
    assert len(np.unique(leaves)) == leaves.size  # near the average, yet the leaves differ
    assert tree.gate_weights[...].shape == (3, 2, 2)
    shapes = nnx.eval_shape(lambda: {  # the per-window and per-feature layouts
        "gated": pnnx.GatedPool(3, (3, 3), rngs=nnx.Rngs(0)).gate_weights,
        "tree": pnnx.TreePool(3, (2, 2), per_feature=True, rngs=nnx.Rngs(0)),
        "mixed": pnnx.MixedPool(2, per_feature=True, in_features=3).alpha_logit,
    })
    assert shapes["gated"].shape == (3, 3) and shapes["mixed"].shape == (3,)
    assert shapes["tree"].leaf_filters.shape == (2, 2, 2, 3)
    assert shapes["tree"].gate_weights.shape == (1, 2, 2, 3)


def test_lip_logits_come_from_a_biasless_conv_instance_norm_and_scaled_sigmoid():
    """LIP's logit branch recomputed from its parameters: a 3 x 3 'SAME' convolution
    without bias, instance normalisation (epsilon 1e-6, learned scale and bias) and
    `12 * sigmoid` (the authors' simplified LIP)."""
    module = with_host_params(nnx.eval_shape(lambda: pnnx.LIPPool(3, (3, 3), 2, 1,
                                                                  rngs=nnx.Rngs(0))))
    kernel = module.logit_conv.kernel[...]
    assert kernel.shape == (3, 3, 3, 3) and module.logit_conv.bias is None
    scale, bias = (np.asarray(getattr(module.logit_norm, k)[...], np.float64)
                   for k in ("scale", "bias"))
    x = np.asarray(X, np.float64)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    h = sum(np.einsum("nhwc,cd->nhwd", padded[:, i:i + 6, j:j + 6], np.asarray(kernel[i, j]))
            for i in range(3) for j in range(3))
    mean, var = h.mean(axis=(1, 2), keepdims=True), h.var(axis=(1, 2), keepdims=True)
    logits = 12.0 / (1.0 + np.exp(-((h - mean) / np.sqrt(var + 1e-6) * scale + bias)))
    got, want = jax.jit(lambda x, w: (module(x), P.lip_pool(x, w, 3, 2, 1)))(
        X, logits.astype(np.float32))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_gradients_reach_every_learned_parameter():
    """Every pool with parameters, under one jit: each parameter gets a finite, nonzero
    gradient of the squared output (the attention heads: test_nnx_attention.py)."""
    modules = {c.name: build(c) for c in CASES if c.pure is not None
               and nnx.state(nnx.eval_shape(lambda c=c: c.make(nnx.Rngs(0))), nnx.Param)}
    assert {"lp_learned", "gem", "gem_strided", "global_gem", "lse", "lip", "mixed", "gated",
            "tree", "conv_blur"} <= set(modules)
    for module in modules.values():
        if isinstance(getattr(module, "p", None), nnx.Param):  # GeM: above its clamp at 1
            module.p.set_value(module.p[...] + 2.0)
    splits = {name: nnx.split(m, nnx.Param, ...) for name, m in modules.items()}

    @functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
    def grads(params):  # one compile; LLVM level 0 only shortens it
        def loss(name, p):
            graphdef, _, rest = splits[name]
            return jnp.sum(nnx.merge(graphdef, p, rest)(X) ** 2)

        return {name: jax.grad(functools.partial(loss, name))(p) for name, p in params.items()}

    for name, g in grads({name: p for name, (_, p, _) in splits.items()}).items():
        for path, leaf in jax.tree_util.tree_leaves_with_path(nnx.to_pure_dict(g)):
            assert np.all(np.isfinite(leaf)) and np.any(np.asarray(leaf) != 0), (name, path)


RANDOM_CASES = {
    "stochastic": lambda x, key: P.stochastic_pool(x, 2, key=key),
    "fractional": lambda x, key: P.fractional_max_pool(x, (5, 5), key=key),
    "mixed_random": lambda x, key: P.mixed_pool(x, 2, alpha=uniform_alpha(key, (2, 3, 3, 3))),
}


@pytest.mark.parametrize("name", sorted(RANDOM_CASES))
def test_random_pool_modes_and_streams(name):
    case = BY_NAME[name]
    module = case.make(nnx.Rngs(0))
    assert module.deterministic is False  # training by default, as nnx.Dropout
    # With a key given to the call, training is the pure function with that key.
    assert_same_program(lambda x, k: module(x, rngs=k), RANDOM_CASES[name], X, jax.random.key(0))
    # The module's own "pool" stream supplies that key: its first draw, then the next.
    first_key = case.make(nnx.Rngs(0)).rngs()
    call = nnx.jit(lambda m, x, key: (m(x), m(x, rngs=key)))
    first, with_first_key = call(module, X, first_key)
    np.testing.assert_array_equal(first, with_first_key)
    second, _ = call(module, X, first_key)
    assert not np.array_equal(first, second)  # the stream advances between training calls
    np.testing.assert_array_equal(call(case.make(nnx.Rngs(0)), X, first_key)[0], first)
    module.eval()
    assert module.deterministic is True
    evaluate = nnx.jit(lambda m, x: m(x))
    np.testing.assert_array_equal(evaluate(module, X), evaluate(module, X))


def test_eval_and_view_reach_nested_random_pools():
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.pool = pnnx.StochasticPool(2, rngs=rngs)

    net = Net(nnx.Rngs(0))
    net.eval()
    assert net.pool.deterministic is True
    net.train()
    assert net.pool.deterministic is False
    assert nnx.view(net, deterministic=True).pool.deterministic is True


def test_training_without_a_stream_says_how_to_fix_it():
    pool = pnnx.StochasticPool(2)
    with pytest.raises(ValueError, match=r"rngs=nnx.Rngs\(...\).*\.eval\(\)"):
        jax.eval_shape(lambda x: pool(x), X)


def test_grad_through_split_and_merge_and_nnx_jit():
    module = pnnx.GeMPool(2, p=3.0)
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)

    def loss(params):
        return nnx.merge(graphdef, params, rest)(X).sum()

    def pure_loss(p):
        return P.gem_pool(X, 2, p=jnp.maximum(p, 1.0)).sum()

    grads, expected = jax.jit(lambda ps: (jax.grad(loss)(ps), jax.grad(pure_loss)(ps["p"][...])))(
        params)
    assert float(expected) != 0.0
    np.testing.assert_allclose(grads["p"][...], expected, rtol=1e-6)
    out, pure_out = nnx.jit(lambda m, x: (m(x), P.gem_pool(x, 2, p=3.0)))(module, X)
    np.testing.assert_allclose(out, pure_out, rtol=1e-6)


RNGS = nnx.Rngs(0)
BAD_ARGUMENTS = [
    (lambda: pnnx.MaxPool(0), ValueError, "window_shape entries must be >= 1"),
    (lambda: pnnx.MaxPool(2, padding=2), ValueError, "at most half the effective window"),
    (lambda: pnnx.MaxPool((2, 2), strides=(1, 1, 1)), ValueError,
     "strides must be .* one entry per"),
    (lambda: pnnx.MaxPool(2, ceil_mode=1), TypeError, "ceil_mode"),
    (lambda: pnnx.SumPool(2, padding="FULL"), ValueError, "'VALID' or 'SAME'"),
    (lambda: pnnx.AvgPool(2, divisor_override=0), ValueError, "divisor_override=0"),
    (lambda: pnnx.LPPool(2, p=0), ValueError, "p=0"),
    (lambda: pnnx.LPPool(2, p=1.0, learnable=True), ValueError, "finite initial p > 1"),
    (lambda: pnnx.LPPool(2, learnable=True, per_feature=True), ValueError, "in_features=None"),
    (lambda: pnnx.LPPool(2, per_feature=True, in_features=3), ValueError,
     "per_feature=True needs learnable=True"),
    (lambda: pnnx.GeMPool(2, p=-1.0), ValueError, "p=-1.0"),
    (lambda: pnnx.GeMPool(2, per_feature=True, learnable=False, in_features=3), ValueError,
     "per_feature=True needs learnable=True"),
    (lambda: pnnx.LSEPool(2, r=0.0), ValueError, "r=0.0"),
    (lambda: pnnx.MixedPool(2, per_feature=True), ValueError, "in_features=None"),
    (lambda: pnnx.GatedPool(3, 2, rngs=RNGS), ValueError, "tuple window_shape or spatial_dims"),
    (lambda: pnnx.TreePool(3, (2, 2), num_leaves=3, rngs=RNGS), ValueError, "power of two"),
    (lambda: pnnx.LIPPool(0, (2, 2), rngs=RNGS), ValueError, "in_features=0"),
    (lambda: pnnx.SoftPool((2, 2), padding=(1, 1, 1)), ValueError, "padding"),
    (lambda: pnnx.AdaptiveAvgPool((0, 2)), ValueError, "must be positive"),
    (lambda: pnnx.AdaptiveMaxPool("7"), TypeError, "output_size"),
    (lambda: pnnx.SpatialPyramidPool(mode="min"), ValueError, "mode must be one of"),
    (lambda: pnnx.SpatialPyramidPool((0,)), ValueError, "levels=\\(0,\\)"),
    (lambda: pnnx.GlobalAvgPool(keepdims=1), TypeError, "keepdims=1"),
    (lambda: pnnx.FractionalMaxPool(), ValueError, "exactly one of output_size and ratio"),
    (lambda: pnnx.FractionalMaxPool(ratio=3), ValueError, "ratio=3"),
    (lambda: pnnx.FractionalMaxPool((0, 2)), ValueError, "output_size entries"),
    (lambda: pnnx.FractionalMaxPool((2, 2), overlapping=True, kernel_size=2), ValueError,
     "overlapping=True"),
    (lambda: pnnx.StochasticPool(2, rngs=5), TypeError, "rngs must be"),
    (lambda: pnnx.StochasticPool(2, deterministic="yes"), TypeError, "deterministic='yes'"),
    (lambda: pnnx.BlurPool(filter_size=9), ValueError, "filter_size"),
    (lambda: pnnx.BlurPool(pad_mode="wrap"), ValueError, "pad_mode='wrap'"),
    (lambda: pnnx.MaxBlurPool(2, padding=3), ValueError, "padding"),
    (lambda: pnnx.SpectralPool(0), ValueError, "output_size"),
    (lambda: pnnx.WaveletPool(levels=0), ValueError, "levels=0"),
    (lambda: pnnx.ConvBlurPool(3, 4, 3, rngs=RNGS), ValueError, "spatial_dims"),
    (lambda: pnnx.ConvBlurPool(3, 0, (3, 3), rngs=RNGS), ValueError, "out_features=0"),
    (lambda: pnnx.ConvBlurPool(3, 4, (3, 0), rngs=RNGS), ValueError, "kernel_size"),
    (lambda: pnnx.FractionalMaxPool(ratio=1.5, spatial_dims=0), ValueError, "spatial_dims=0"),
    (lambda: pnnx.MAPHead(3, mlp_dim=0, rngs=RNGS), ValueError, "mlp_dim=0"),
    (lambda: pnnx.AttentionPool(3, (2, 2), output_dim=-1, rngs=RNGS), ValueError, "output_dim=-1"),
    (lambda: pnnx.AttentionPool(6, (4, 4), num_heads=4, rngs=RNGS), ValueError, "must divide"),
    (lambda: pnnx.AttentionPool(3, (0, 4), rngs=RNGS), ValueError, "spatial_shape"),
    (lambda: pnnx.MAPHead(3, num_queries=0, rngs=RNGS), ValueError, "num_queries"),
    (lambda: pnnx.MaxUnpool(2, padding=3), ValueError, "at most half the effective window"),
    (lambda: pnnx.RoIPool(0), ValueError, "output_size=0"),
    (lambda: pnnx.RoIAlign(2, spatial_scale=-1.0), ValueError, "spatial_scale"),
    (lambda: pnnx.RoIAlign(2, aligned=1), TypeError, "aligned=1"),
]


@pytest.mark.parametrize("make, error, match", BAD_ARGUMENTS, ids=[m for _, _, m in BAD_ARGUMENTS])
def test_bad_arguments_fail_when_built(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_bad_inputs_name_what_was_expected():
    gated = build(BY_NAME["gated"])  # built for 3 channels
    with pytest.raises(ValueError, match=r"in_features=3 .*\(1, 6, 6, 4\)"):
        gated.output_shape((1, 6, 6, 4))
    with pytest.raises(ValueError, match=r"in_features=3 .*\(1, 6, 6, 4\)"):
        jax.eval_shape(lambda x: gated(x), jnp.zeros((1, 6, 6, 4)))
    attention = build(BY_NAME["attention"])  # built for 6 x 6 maps
    with pytest.raises(ValueError, match=r"spatial_shape=\(6, 6\)"):
        jax.eval_shape(lambda x: attention(x), X_ODD)
    with pytest.raises(ValueError, match="larger than the padded input"):
        pnnx.MaxPool(3).output_spatial((2, 5))
    with pytest.raises(ValueError, match="pools 2 spatial dims"):
        pnnx.MaxPool((2, 2)).output_spatial((4, 4, 4))
    roi = pnnx.RoIAlign((2, 3))
    boxes = np.zeros((5, 5), np.float32)
    assert roi.output_shape(X.shape, num_boxes=5) == jax.eval_shape(roi, X, boxes).shape
    with pytest.raises(ValueError, match=r"features must have shape \(N, H, W, C\)"):
        roi.output_shape((6, 6, 3))
    with pytest.raises(ValueError, match="input/2 <= output <= input"):
        pnnx.FractionalMaxPool((4, 4)).output_spatial((10, 10))


def test_fractional_sizes_by_hand():
    """`ceil(L / ratio)` per spatial dim, leading batch dims kept, traced and reported."""
    for module, shape, want in [
            (pnnx.FractionalMaxPool(ratio=math.sqrt(2), deterministic=True), (1, 9, 7, 2),
             (1, 7, 5, 2)),
            (pnnx.FractionalMaxPool(ratio=(1.5, 1.0), spatial_dims=2, deterministic=True),
             (3, 1, 9, 7, 2), (3, 1, 6, 7, 2))]:
        assert jax.eval_shape(module, jax.ShapeDtypeStruct(shape, jnp.float32)).shape == want
        assert module.output_shape(shape) == want
