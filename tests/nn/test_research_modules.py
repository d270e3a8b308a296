"""Flax research-pool modules: their parameters, the functions they wrap, the "pool" stream,
and LeNet-5 built with each research downsample choice (real init and apply)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from poolnets import pooling
from poolnets.models import create
from poolnets.nn import (
    FractionalMaxPool,
    GatedPool,
    GeMPool,
    GlobalGeMPool,
    LIPPool,
    LSEPool,
    MedianPool,
    MixedPool,
    SoftPool,
    StochasticPool,
    TreePool,
)

X = np.random.default_rng(0).normal(size=(2, 6, 6, 3)).astype(np.float32)
KEY = jax.random.key(0)


def _init(module, x=X):
    return module.init({"params": KEY, "pool": KEY}, x)


def _host_init(module, x=X):
    """Variables at init's shapes drawn host-side: compiling Flax's 4-D conv initialiser
    costs seconds on this CPU, and the values do not matter to these tests."""
    rng = np.random.default_rng(4)
    shapes = jax.eval_shape(lambda: _init(module, x))
    return jax.tree_util.tree_map(lambda s: jnp.asarray(0.3 * rng.normal(size=s.shape), s.dtype),
                                  shapes)


def _set(variables, **params):
    new = dict(variables["params"])
    new.update({k: jnp.asarray(v, jnp.float32) for k, v in params.items()})
    return {"params": new}


def test_learned_modules_apply_their_functions_with_their_parameters():
    rng = np.random.default_rng(1)
    gate = rng.normal(size=(2, 2, 3))
    leaves, gates = rng.normal(size=(4, 2, 2)), rng.normal(size=(3, 2, 2))
    cases = [
        (MixedPool(2, per_feature=True), dict(alpha_logit=[-1.0, 0.0, 2.0]),
         lambda x: pooling.mixed_pool(x, 2, alpha=jax.nn.sigmoid(jnp.array([-1.0, 0.0, 2.0])))),
        (GatedPool(2, per_feature=True), dict(gate_weights=gate),
         lambda x: pooling.gated_pool(x, 2, gate_weights=gate.astype(np.float32))),
        (TreePool(2, num_leaves=4), dict(leaf_filters=leaves, gate_weights=gates),
         lambda x: pooling.tree_pool(x, 2, leaf_filters=leaves.astype(np.float32),
                                     gate_weights=gates.astype(np.float32))),
        (GeMPool(3, 2, 1), dict(p=2.5), lambda x: pooling.gem_pool(x, 3, 2, 1, p=2.5)),
        (GeMPool(2), dict(p=0.25), lambda x: pooling.gem_pool(x, 2, p=1.0)),  # p_min clamp
        (LSEPool(2, learn_r=True), dict(log_r=math.log(4.0)),
         lambda x: pooling.lse_pool(x, 2, r=4.0)),
        (GlobalGeMPool(per_feature=True), dict(p=[1.0, 2.0, 5.0]),
         lambda x: pooling.global_gem_pool(x, p=jnp.array([1.0, 2.0, 5.0]))),
    ]

    @jax.jit
    def run(x):
        out = []
        for module, params, reference in cases:
            variables = _set(_init(module, x), **params)
            out.append((module.apply(variables, x), reference(x)))
        return out

    for (module, _, _), (got, want) in zip(cases, run(X), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=type(module).__name__)


def test_initial_parameters_and_parameter_free_modules():
    shapes = jax.tree_util.tree_map(jnp.shape, jax.eval_shape(lambda: {
        "mixed": _init(MixedPool(2))["params"],
        "gated": _init(GatedPool(3, 2, 1))["params"],
        "tree": _init(TreePool(2, per_feature=True))["params"],
        "gem": _init(GeMPool(2, per_feature=True))["params"],
    }))
    assert shapes == {
        "mixed": {"alpha_logit": ()},
        "gated": {"gate_weights": (3, 3)},
        "tree": {"leaf_filters": (2, 2, 2, 3), "gate_weights": (1, 2, 2, 3)},
        "gem": {"p": (3,)},
    }
    leaves, p = jax.jit(lambda: (_init(TreePool(2, num_leaves=8))["params"]["leaf_filters"],
                                 _init(GeMPool(2))["params"]["p"]))()
    # Near the averaging filter (1/4 per tap), and the leaves differ.
    assert np.all((leaves >= 0.125) & (leaves < 0.375)) and len(np.unique(leaves)) == leaves.size
    assert float(p) == 3.0
    for module in (SoftPool(2), MedianPool(2), StochasticPool(2), LSEPool(2),
                   GeMPool(2, learn_p=False), MixedPool(2, random=True)):
        assert "params" not in jax.eval_shape(lambda m=module: _init(m)), type(module).__name__


def test_lip_logits_come_from_conv_instance_norm_and_gate():
    module = LIPPool(3, 2, 1)
    variables = _host_init(module)
    kernel = variables["params"]["logit_conv"]["kernel"]
    assert kernel.shape == (3, 3, 3, 3) and "bias" not in variables["params"]["logit_conv"]
    h = jax.lax.conv_general_dilated(X, kernel, (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    mean, var = h.mean(axis=(1, 2), keepdims=True), h.var(axis=(1, 2), keepdims=True)
    scale, bias = (variables["params"]["logit_norm"][k] for k in ("scale", "bias"))
    logits = 12.0 * jax.nn.sigmoid((h - mean) / jnp.sqrt(var + 1e-6) * scale + bias)
    got = jax.jit(module.apply)(variables, X)
    np.testing.assert_allclose(got, pooling.lip_pool(X, logits, 3, 2, 1), rtol=1e-5, atol=1e-6)


def test_gradients_reach_every_learned_parameter():
    modules = [MixedPool(2, per_feature=True), GatedPool(2), TreePool(2, num_leaves=4),
               GeMPool(2), LSEPool(2, learn_r=True), GlobalGeMPool()]
    x = np.abs(X) + 0.1
    lip = LIPPool(2)
    lip_params = _host_init(lip, x)["params"]

    @jax.jit
    def grads(x, lip_params):
        out = []
        for m in modules:
            v = _init(m, x)
            out.append(jax.grad(lambda p, m=m: jnp.sum(m.apply({"params": p}, x) ** 2))(
                v["params"]))
        out.append(jax.grad(lambda p: jnp.sum(lip.apply({"params": p}, x) ** 2))(lip_params))
        return out

    for m, g in zip(modules + [lip], grads(x, lip_params), strict=True):
        for path, leaf in jax.tree_util.tree_leaves_with_path(g):
            assert np.all(np.isfinite(leaf)) and np.any(leaf != 0), (type(m).__name__, path)


def test_random_modules_use_the_pool_stream_in_training_only():
    modules = {
        "stochastic": (StochasticPool(2), lambda x, k: pooling.stochastic_pool(x, 2, key=k)),
        "fractional": (FractionalMaxPool(output_size=(4, 5)),
                       lambda x, k: pooling.fractional_max_pool(x, (4, 5), key=k)),
    }
    x = np.abs(X)

    @jax.jit
    def run(x, k1, k2):
        out = {}
        for name, (m, fn) in modules.items():
            out[name] = (m.apply({}, x), fn(x, None), m.apply({}, x, train=True, rngs={"pool": k1}),
                         m.apply({}, x, train=True, rngs={"pool": k1}),
                         m.apply({}, x, train=True, rngs={"pool": k2}))
        mixed = MixedPool(2, random=True)
        out["mixed"] = (mixed.apply({}, x), pooling.mixed_pool(x, 2, alpha=0.5),
                        mixed.apply({}, x, train=True, rngs={"pool": k1}))
        return out

    out = run(x, jax.random.key(1), jax.random.key(2))
    for name in modules:
        evaluation, deterministic, a, b, c = out[name]
        np.testing.assert_array_equal(evaluation, deterministic)
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c), name
    evaluation, half, train = out["mixed"]
    np.testing.assert_allclose(evaluation, half, rtol=1e-6)
    top, avg = pooling.mixed_pool(x, 2, alpha=1.0), pooling.mixed_pool(x, 2, alpha=0.0)
    picked_max = np.isclose(train, top)
    assert np.all(picked_max | np.isclose(train, avg)) and 0.3 < picked_max.mean() < 0.7
    with pytest.raises(Exception, match="pool"):
        StochasticPool(2).apply({}, x, train=True)


def test_fractional_module_sizes_and_errors():
    def shape(module, x):
        return jax.eval_shape(lambda: module.apply({}, x)).shape

    assert shape(FractionalMaxPool(ratio=math.sqrt(2)), np.zeros((1, 9, 7, 2))) == (1, 7, 5, 2)
    assert shape(FractionalMaxPool(ratio=(1.5, 1.0), spatial_dims=2),
                 np.zeros((3, 1, 9, 7, 2))) == (3, 1, 6, 7, 2)
    with pytest.raises(ValueError, match="output_size and ratio"):
        shape(FractionalMaxPool(), X)
    with pytest.raises(ValueError, match="ratio"):
        shape(FractionalMaxPool(ratio=3.0), X)


MINE = ["stochastic", "fractional", "mixed", "mixed_random", "gated", "tree",
        "gem", "lse", "soft", "lip", "median"]


@pytest.mark.parametrize("downsample, head", [(d, None) for d in MINE]
                         + [("max", h) for h in ("gem", "lse", "soft")])
def test_lenet5_initialises_and_applies_with_each_research_pool(downsample, head):
    model = create("lenet5", num_classes=10, downsample=downsample, head=head)
    x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 20, 20, 1)), jnp.float32)
    # init is traced for real but not compiled: compiling Flax's multi-dimensional kernel
    # initialisers costs ~10 s per model on this CPU (tests/models cover model.init itself);
    # the parameters are then drawn host-side at init's shapes and dtypes.
    shapes = jax.eval_shape(
        lambda: model.init({"params": KEY, "pool": KEY, "dropout": KEY}, x, train=False))
    rng = np.random.default_rng(3)
    variables = jax.tree_util.tree_map(
        lambda s: jnp.asarray(0.3 * rng.normal(size=s.shape), s.dtype), shapes)

    @jax.jit
    def run(variables, x, key):
        rngs = {"pool": key, "dropout": key}
        return (model.apply(variables, x, train=False),
                model.apply(variables, x, train=True, rngs=rngs))

    evaluation, train = run(variables, x, KEY)
    assert evaluation.shape == train.shape == (2, 10)
    assert np.all(np.isfinite(evaluation)) and np.all(np.isfinite(train))
