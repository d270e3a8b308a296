"""AttentionPool (CLIP) and MAPHead against NumPy re-computations from their parameters."""

from __future__ import annotations

import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from poolnets.nn import AttentionPool, AttentionPool2d, MAPHead
from poolnets.nn.attention_pool import params_from_clip

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def attention(queries, tokens, p):
    """Multi-head attention from flax MultiHeadDotProductAttention parameters, float64."""
    q = np.einsum("nqc,chd->nqhd", queries, p["query"]["kernel"]) + p["query"]["bias"]
    k = np.einsum("ntc,chd->nthd", tokens, p["key"]["kernel"]) + p["key"]["bias"]
    v = np.einsum("ntc,chd->nthd", tokens, p["value"]["kernel"]) + p["value"]["bias"]
    logits = np.einsum("nqhd,nthd->nhqt", q, k) / math.sqrt(q.shape[-1])
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    weights /= weights.sum(axis=-1, keepdims=True)
    mixed = np.einsum("nhqt,nthd->nqhd", weights, v)
    return np.einsum("nqhd,hdo->nqo", mixed, p["out"]["kernel"]) + p["out"]["bias"]


def init(module, seed, x):
    """Jitted init: one compile instead of one per primitive."""
    return jax.jit(module.init)(jax.random.key(seed), x)


def as_numpy(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def clip_reference(x, params):
    tokens = x.reshape(x.shape[0], -1, x.shape[-1])
    tokens = np.concatenate([tokens.mean(axis=1, keepdims=True), tokens], axis=1)
    tokens = tokens + params["positional_embedding"]
    return attention(tokens[:, :1], tokens, params["attention"])[:, 0]


def map_reference(x, params):
    tokens = x.reshape(x.shape[0], -1, x.shape[-1])
    probe = np.broadcast_to(params["probe"], (x.shape[0], *params["probe"].shape[1:]))
    a = attention(probe, tokens, params["attention"])
    mu, var = a.mean(-1, keepdims=True), a.var(-1, keepdims=True)
    h = (a - mu) / np.sqrt(var + 1e-6) * params["norm"]["scale"] + params["norm"]["bias"]
    h = h @ params["mlp_in"]["kernel"] + params["mlp_in"]["bias"]
    h = 0.5 * h * (1 + np.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h ** 3)))  # tanh GELU
    return a + h @ params["mlp_out"]["kernel"] + params["mlp_out"]["bias"]


@pytest.fixture(scope="module")
def feature_map():
    return np.random.default_rng(0).normal(size=(3, 4, 5, 16)).astype(np.float32)


def test_attention_pool_matches_reference(feature_map):
    module = AttentionPool(num_heads=4, output_dim=8)
    variables = init(module, 0, feature_map)
    params = variables["params"]
    assert params["positional_embedding"].shape == (21, 16)  # 4 * 5 tokens + the mean
    assert params["attention"]["query"]["kernel"].shape == (16, 4, 4)
    got = jax.jit(module.apply)(variables, feature_map)
    assert got.shape == (3, 8)
    np.testing.assert_allclose(np.asarray(got), clip_reference(feature_map, as_numpy(params)),
                               atol=1e-5)


def test_attention_pool_positions_matter_only_through_the_embedding(feature_map):
    module = AttentionPool2d(num_heads=2)  # CLIP's name, same module
    variables = init(module, 1, feature_map)
    perm = np.random.default_rng(1).permutation(20)
    shuffled = feature_map.reshape(3, 20, 16)[:, perm].reshape(feature_map.shape)
    apply = jax.jit(module.apply)
    assert not np.allclose(apply(variables, feature_map), apply(variables, shuffled), atol=1e-4)
    flat = jax.tree.map(lambda a: a, variables)
    flat["params"]["positional_embedding"] = jnp.zeros((21, 16))
    np.testing.assert_allclose(np.asarray(apply(flat, feature_map)),
                               np.asarray(apply(flat, shuffled)), atol=1e-5)


def test_attention_pool_is_n_dimensional():
    rng = np.random.default_rng(2)
    for shape in [(2, 7, 64), (2, 2, 3, 2, 128)]:
        x = rng.normal(size=shape).astype(np.float32)
        module = AttentionPool()
        variables = init(module, 0, x)
        heads = variables["params"]["attention"]["query"]["kernel"].shape[1]
        assert heads == shape[-1] // 64  # CLIP's 64-wide heads by default
        got = jax.jit(module.apply)(variables, x)
        assert got.shape == (2, shape[-1])
        np.testing.assert_allclose(np.asarray(got), clip_reference(x, as_numpy(
            variables["params"])), atol=1e-5)


def test_map_head_matches_reference_and_ignores_positions(feature_map):
    module = MAPHead(num_heads=2, mlp_dim=24)
    variables = init(module, 3, feature_map)
    apply = jax.jit(module.apply)
    got = apply(variables, feature_map)
    assert got.shape == (3, 16)
    want = map_reference(feature_map, as_numpy(variables["params"]))[:, 0]
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)
    perm = np.random.default_rng(3).permutation(20)
    shuffled = feature_map.reshape(3, 20, 16)[:, perm].reshape(feature_map.shape)
    np.testing.assert_allclose(np.asarray(apply(variables, shuffled)), np.asarray(got), atol=1e-5)
    several = MAPHead(num_queries=3)
    v3 = init(several, 4, feature_map)
    assert v3["params"]["probe"].shape == (1, 3, 16)
    assert v3["params"]["mlp_in"]["kernel"].shape == (16, 64)  # mlp_dim defaults to 4 C
    out = jax.jit(several.apply)(v3, feature_map)
    assert out.shape == (3, 3, 16)
    np.testing.assert_allclose(np.asarray(out), map_reference(feature_map, as_numpy(
        v3["params"])), atol=1e-5)


def test_gradients_reach_every_parameter(feature_map):
    for module in (AttentionPool(num_heads=2), MAPHead(num_heads=2)):
        variables = init(module, 5, feature_map)
        grads = jax.jit(jax.grad(lambda v, m=module: jnp.sum(m.apply(v, feature_map) ** 2)))(
            variables)
        for path, g in jax.tree_util.tree_leaves_with_path(grads):
            assert np.isfinite(np.asarray(g)).all(), path
            assert np.abs(np.asarray(g)).max() > 0, path


def test_bad_arguments(feature_map):
    with pytest.raises(ValueError, match="num_heads=3"):
        AttentionPool(num_heads=3).init(jax.random.key(0), feature_map)
    with pytest.raises(ValueError, match="num_heads=0"):
        MAPHead(num_heads=0).init(jax.random.key(0), feature_map)
    with pytest.raises(ValueError, match="num_queries"):
        MAPHead(num_queries=0).init(jax.random.key(0), feature_map)
    module = AttentionPool(num_heads=2)
    variables = init(module, 0, feature_map)
    with pytest.raises(ValueError, match="initialised for 20 spatial positions; got 12"):
        module.apply(variables, feature_map[:, :3, :4])
    with pytest.raises(ValueError, match="feature map"):
        init(module, 0, feature_map[:, 0, 0])


def test_matches_open_clip_attention_pool_2d():
    """OpenCLIP's AttentionPool2d output (tools/make_open_clip_fixture_attention_pool.py)."""
    data = dict(np.load(FIXTURES / "open_clip_attention_pool.npz"))
    heads = int(data["num_heads"])
    params = params_from_clip(data, heads)
    module = AttentionPool(num_heads=heads, output_dim=data["c_proj.weight"].shape[0])
    shapes = jax.eval_shape(module.init, jax.random.key(0), data["x"])["params"]
    assert jax.tree.map(np.shape, params) == jax.tree.map(lambda a: a.shape, shapes)
    got = jax.jit(module.apply)({"params": params}, data["x"])
    np.testing.assert_allclose(np.asarray(got), data["y"], atol=2e-5)
