"""`poolnets.nnx.AttentionPool` (CLIP) and `MAPHead` against NumPy re-computations from their
parameters (float64), and `load_clip` against OpenCLIP's own `AttentionPool2d` output.

Modules are built abstractly and given host-drawn parameters (`nnx_cases.with_host_params`):
the values do not matter to a reference check, and Flax's initialisers cost seconds here.
"""

from __future__ import annotations

import functools
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from nnx_cases import with_host_params

import poolnets.nnx as pnnx
from poolnets.nnx.attention import load_clip

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
X = np.random.default_rng(0).normal(size=(3, 4, 5, 16)).astype(np.float32)
# X's 4 x 5 positions in another order.
SHUFFLED = X.reshape(3, 20, 16)[:, np.random.default_rng(1).permutation(20)].reshape(X.shape)


def attention(queries, tokens, p):
    """Multi-head attention with biases from Flax's kernels (C, heads, head_dim), float64."""
    q = np.einsum("nqc,chd->nqhd", queries, p["query"]["kernel"]) + p["query"]["bias"]
    k = np.einsum("ntc,chd->nthd", tokens, p["key"]["kernel"]) + p["key"]["bias"]
    v = np.einsum("ntc,chd->nthd", tokens, p["value"]["kernel"]) + p["value"]["bias"]
    logits = np.einsum("nqhd,nthd->nhqt", q, k) / math.sqrt(q.shape[-1])
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    weights /= weights.sum(axis=-1, keepdims=True)
    mixed = np.einsum("nhqt,nthd->nqhd", weights, v)
    return np.einsum("nqhd,hdo->nqo", mixed, p["out"]["kernel"]) + p["out"]["bias"]


def clip_reference(x, p):
    """CLIP: the token mean prepended, the positional embedding added, the mean's query."""
    tokens = x.reshape(x.shape[0], -1, x.shape[-1]).astype(np.float64)
    tokens = np.concatenate([tokens.mean(axis=1, keepdims=True), tokens], axis=1)
    tokens = tokens + p["positional_embedding"]
    return attention(tokens[:, :1], tokens, p["attention"])[:, 0]


def map_reference(x, p):
    """big_vision's MAPHead: probes attend, then a + MLP(LayerNorm(a)) with tanh GELU."""
    tokens = x.reshape(x.shape[0], -1, x.shape[-1]).astype(np.float64)
    probe = np.broadcast_to(p["probe"], (x.shape[0], *p["probe"].shape[1:]))
    a = attention(probe, tokens, p["attention"])
    mu, var = a.mean(-1, keepdims=True), a.var(-1, keepdims=True)
    h = (a - mu) / np.sqrt(var + 1e-6) * p["norm"]["scale"] + p["norm"]["bias"]
    h = h @ p["mlp_in"]["kernel"] + p["mlp_in"]["bias"]
    h = 0.5 * h * (1 + np.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h ** 3)))
    return a + h @ p["mlp_out"]["kernel"] + p["mlp_out"]["bias"]


def built(make, seed=0):
    return with_host_params(nnx.eval_shape(lambda: make(nnx.Rngs(0))), seed)


def params(module):
    """The module's parameters as nested float64 NumPy arrays."""
    pure = nnx.to_pure_dict(nnx.state(module, nnx.Param))
    return jax.tree.map(lambda a: np.asarray(a, np.float64), pure)


# LLVM level 0 only shortens the compiles (the programs are tiny).
quick_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


@functools.partial(quick_jit, static_argnums=0)
def _apply(graphdefs, states, inputs):
    return [nnx.merge(g, s)(x) for g, s, x in zip(graphdefs, states, inputs, strict=True)]


def run(*calls):
    """`module(x)` for each `(module, x)` pair, under one jit (reused while the modules'
    structure is the same: new parameter values do not recompile)."""
    graphdefs, states = zip(*(nnx.split(module) for module, _ in calls), strict=True)
    return _apply(graphdefs, states, [x for _, x in calls])


def test_attention_pool_matches_reference():
    module = built(lambda r: pnnx.AttentionPool(16, (4, 5), num_heads=4, output_dim=8, rngs=r))
    p = params(module)
    assert p["positional_embedding"].shape == (21, 16)  # 4 * 5 tokens + the mean
    assert p["attention"]["query"]["kernel"].shape == (16, 4, 4)
    (got,) = run((module, X))
    assert got.shape == (3, 8)
    np.testing.assert_allclose(got, clip_reference(X, p), atol=1e-5)


def test_attention_pool_positions_matter_only_through_the_embedding():
    module = built(lambda r: pnnx.AttentionPool(16, (4, 5), num_heads=2, rngs=r), seed=1)
    ours, shuffled = run((module, X), (module, SHUFFLED))
    assert not np.allclose(ours, shuffled, atol=1e-4)
    module.positional_embedding.set_value(jnp.zeros((21, 16)))
    ours, shuffled = run((module, X), (module, SHUFFLED))
    np.testing.assert_allclose(ours, shuffled, atol=1e-5)


def test_attention_pool_is_n_dimensional_with_64_wide_heads_by_default():
    rng = np.random.default_rng(2)
    for shape in [(2, 7, 64), (2, 2, 3, 2, 128)]:
        x = rng.normal(size=shape).astype(np.float32)
        module = built(lambda r, s=shape: pnnx.AttentionPool(s[-1], s[1:-1], rngs=r))
        p = params(module)
        assert p["attention"]["query"]["kernel"].shape[1] == shape[-1] // 64  # CLIP's heads
        assert module.output_shape(shape) == (2, shape[-1])
        (got,) = run((module, x))
        np.testing.assert_allclose(got, clip_reference(x, p), rtol=1e-5, atol=1e-5)


def test_map_head_matches_reference_and_ignores_positions():
    module = built(lambda r: pnnx.MAPHead(16, num_heads=2, mlp_dim=24, rngs=r), seed=3)
    several = built(lambda r: pnnx.MAPHead(16, num_queries=3, rngs=r), seed=4)
    got, shuffled, out = run((module, X), (module, SHUFFLED), (several, X))
    assert got.shape == (3, 16)
    np.testing.assert_allclose(got, map_reference(X, params(module))[:, 0], atol=1e-5)
    np.testing.assert_allclose(shuffled, got, atol=1e-5)
    p = params(several)
    assert p["probe"].shape == (1, 3, 16)
    assert p["mlp_in"]["kernel"].shape == (16, 64)  # mlp_dim defaults to 4 C
    assert p["attention"]["query"]["kernel"].shape[1] == 1  # 16 channels: one head
    assert out.shape == (3, 3, 16)
    np.testing.assert_allclose(out, map_reference(X, p), atol=1e-5)


def test_gradients_reach_every_parameter():
    modules = [built(lambda r: pnnx.AttentionPool(16, (4, 5), num_heads=2, rngs=r), seed=5),
               built(lambda r: pnnx.MAPHead(16, num_heads=2, rngs=r), seed=6)]
    splits = [nnx.split(m, nnx.Param, ...) for m in modules]

    @quick_jit
    def grads(params):
        return [jax.grad(lambda p, g=g, rest=rest: jnp.sum(nnx.merge(g, p, rest)(X) ** 2))(p)
                for (g, _, rest), p in zip(splits, params, strict=True)]

    for module, g in zip(modules, grads([p for _, p, _ in splits]), strict=True):
        for path, leaf in jax.tree_util.tree_leaves_with_path(nnx.to_pure_dict(g)):
            leaf = np.asarray(leaf)
            assert np.isfinite(leaf).all() and np.abs(leaf).max() > 0, (type(module), path)


def test_bad_arguments_and_inputs():
    rngs = nnx.Rngs(0)
    with pytest.raises(ValueError, match="num_heads=3 must divide in_features=16"):
        pnnx.AttentionPool(16, (4, 5), num_heads=3, rngs=rngs)
    with pytest.raises(ValueError, match="num_heads=0"):
        pnnx.MAPHead(16, num_heads=0, rngs=rngs)
    with pytest.raises(ValueError, match="num_queries"):
        pnnx.MAPHead(16, num_queries=0, rngs=rngs)
    pool = nnx.eval_shape(lambda: pnnx.AttentionPool(16, (4, 5), num_heads=2, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=r"spatial_shape=\(4, 5\).*\(3, 3, 4, 16\)"):
        jax.eval_shape(lambda x: pool(x), X[:, :3, :4])
    with pytest.raises(ValueError, match=r"spatial_shape=\(4, 5\).*\(3, 16\)"):
        jax.eval_shape(lambda x: pool(x), X[:, 0, 0])
    head = nnx.eval_shape(lambda: pnnx.MAPHead(16, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=r"feature map .*\(3, 16\)"):
        jax.eval_shape(lambda x: head(x), X[:, 0, 0])
    with pytest.raises(ValueError, match=r"in_features=16 .*\(3, 4, 5, 8\)"):
        jax.eval_shape(lambda x: head(x), X[..., :8])


def clip_fixture():
    return dict(np.load(FIXTURES / "open_clip_attention_pool.npz"))


def test_load_clip_matches_open_clip_attention_pool_2d():
    """OpenCLIP's AttentionPool2d output (tools/make_open_clip_fixture_attention_pool.py)."""
    data = clip_fixture()
    heads, out = int(data["num_heads"]), data["c_proj.weight"].shape[0]
    module = nnx.eval_shape(lambda: pnnx.AttentionPool(
        16, (3, 3), num_heads=heads, output_dim=out, rngs=nnx.Rngs(0)))
    assert load_clip(module, data) is module
    (got,) = run((module, data["x"]))
    np.testing.assert_allclose(got, data["y"], atol=2e-5)


def test_load_clip_rejects_a_state_that_does_not_fit():
    data = clip_fixture()

    def abstract(spatial, output_dim):
        return nnx.eval_shape(lambda: pnnx.AttentionPool(
            16, spatial, num_heads=4, output_dim=output_dim, rngs=nnx.Rngs(0)))

    with pytest.raises(ValueError, match=r"positional_embedding has shape \(10, 16\).*\(17, 16\)"):
        load_clip(abstract((4, 4), 8), data)
    wrong_width = abstract((3, 3), None)  # output_dim 16; CLIP's is 8
    with pytest.raises(ValueError, match=r"c_proj.weight has shape \(8, 16\).*\(16, 16\)"):
        load_clip(wrong_width, data)
    # Checked before anything is set: the embedding (which fits) stays abstract.
    assert isinstance(wrong_width.positional_embedding.get_value(), jax.ShapeDtypeStruct)
    del data["k_proj.bias"]
    with pytest.raises(ValueError, match="no 'k_proj.bias'"):
        load_clip(abstract((3, 3), 8), data)
    with pytest.raises(TypeError, match="AttentionPool"):
        load_clip(pnnx.GlobalAvgPool(), data)
