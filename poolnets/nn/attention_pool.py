"""Attention-based global heads: CLIP's attention pooling and a multi-head attention probe.

Both flatten a feature map `(N, *spatial, C)` (any number of spatial dims) into tokens
`(N, T, C)`, `T = prod(spatial)`, and let learned queries attend over them.

* `AttentionPool` -- Radford et al., "Learning Transferable Visual Models From Natural
  Language Supervision" (CLIP), ICML 2021, arXiv:2103.00020, the `AttentionPool2d` that
  ends CLIP's modified ResNets: the token mean is prepended as an extra token, a learned
  positional embedding (one row per token, the mean's included) is added, and multi-head
  attention is evaluated for the single query at the mean token over all `T + 1` tokens
  (keys and values include the mean token). Query/key/value/output projections have
  biases; the result is the output projection at that query, `(N, output_dim)`.
* `MAPHead` -- multi-head attention pooling as in the ViT heads of Zhai et al.,
  "Scaling Vision Transformers", CVPR 2022 (arXiv:2106.04560) and big_vision's MAPHead:
  `num_queries` learned probe vectors attend over the tokens (no positional embedding:
  the head is invariant to permuting the spatial positions); the attended vector then
  gets a pre-LayerNorm residual MLP, `z = a + MLP(LayerNorm(a))` with
  `MLP = Dense(mlp_dim) -> GELU -> Dense(C)`. Result `(N, C)` for one query,
  `(N, num_queries, C)` otherwise.

`num_heads=None` picks `C // 64` heads (CLIP's 64-wide heads) when 64 divides C, else 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from poolnets.nn.heads import HeadSpec
from poolnets.nnx.attention import resolve_num_heads  # one rule for both layers


def _tokens(x: jax.Array) -> jax.Array:
    if x.ndim < 3:
        raise ValueError(f"expected a feature map (N, *spatial, C); got shape {x.shape}")
    # Explicit token count: reshape(N, -1, C) cannot infer it for an empty batch (0 / 0).
    return x.reshape(x.shape[0], math.prod(x.shape[1:-1]), x.shape[-1])


class AttentionPool(nn.Module):
    """CLIP attention pooling, N-d: `(N, *spatial, C) -> (N, output_dim or C)`.

    The positional embedding `(T + 1, C)` is created for the spatial size seen at init
    (stddev `C ** -0.5`, as CLIP); other sizes raise a ValueError.
    """

    num_heads: int | None = None
    output_dim: int | None = None
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train
        tokens = _tokens(x)
        features = tokens.shape[-1]
        heads = resolve_num_heads(self.num_heads, features)
        tokens = jnp.concatenate([tokens.mean(axis=1, keepdims=True), tokens], axis=1)
        if self.has_variable("params", "positional_embedding"):
            rows = self.get_variable("params", "positional_embedding").shape[0]
            if rows != tokens.shape[1]:
                raise ValueError(
                    f"AttentionPool was initialised for {rows - 1} spatial positions; got "
                    f"{tokens.shape[1] - 1} (input shape {x.shape})"
                )
        pos = self.param("positional_embedding", nn.initializers.normal(features ** -0.5),
                         tokens.shape[1:], self.param_dtype)
        tokens = tokens + pos.astype(tokens.dtype)
        attend = nn.MultiHeadDotProductAttention(
            num_heads=heads, qkv_features=features, out_features=self.output_dim or features,
            dtype=self.dtype, param_dtype=self.param_dtype, name="attention")
        return attend(tokens[:, :1], tokens)[:, 0]


AttentionPool2d = AttentionPool  # CLIP's name; this version takes any number of spatial dims


class MAPHead(nn.Module):
    """Multi-head attention probe: `(N, *spatial, C) -> (N, C)` (or `(N, num_queries, C)`)."""

    num_heads: int | None = None
    mlp_dim: int | None = None
    num_queries: int = 1
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train
        if isinstance(self.num_queries, bool) or not isinstance(self.num_queries, int) or (
                self.num_queries < 1):
            raise ValueError(f"num_queries must be a positive int; got {self.num_queries!r}")
        tokens = _tokens(x)
        features = tokens.shape[-1]
        heads = resolve_num_heads(self.num_heads, features)
        probe = self.param("probe", nn.initializers.xavier_uniform(),
                           (1, self.num_queries, features), self.param_dtype)
        queries = jnp.broadcast_to(probe.astype(tokens.dtype),
                                   (tokens.shape[0], self.num_queries, features))
        attended = nn.MultiHeadDotProductAttention(
            num_heads=heads, kernel_init=nn.initializers.xavier_uniform(), dtype=self.dtype,
            param_dtype=self.param_dtype, name="attention")(queries, tokens)
        hidden = nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype, name="norm")(
            attended)
        hidden = nn.Dense(self.mlp_dim or 4 * features, dtype=self.dtype,
                          param_dtype=self.param_dtype, name="mlp_in")(hidden)
        hidden = nn.Dense(features, dtype=self.dtype, param_dtype=self.param_dtype,
                          name="mlp_out")(nn.gelu(hidden))
        out = attended + hidden
        return out[:, 0] if self.num_queries == 1 else out


def params_from_clip(state: Mapping[str, Any], num_heads: int) -> dict[str, Any]:
    """`AttentionPool` params from a CLIP/OpenCLIP `AttentionPool2d` state dict (arrays).

    Torch `Linear` weights are `(out, in)`; flax's attention kernels split the feature
    axis into heads: query/key/value `W.T -> (C, heads, C // heads)`, output projection
    `W.T -> (heads, C // heads, out)`. CLIP flattens NCHW maps in row-major spatial order,
    as `AttentionPool` flattens channels-last ones, so the positional embedding carries over.
    """
    pos = np.asarray(state["positional_embedding"])
    features = pos.shape[1]
    head_dim = features // resolve_num_heads(num_heads, features)

    def split(prefix: str) -> dict[str, np.ndarray]:
        weight, bias = np.asarray(state[f"{prefix}.weight"]), np.asarray(state[f"{prefix}.bias"])
        return {"kernel": weight.T.reshape(features, num_heads, head_dim),
                "bias": bias.reshape(num_heads, head_dim)}

    out_weight = np.asarray(state["c_proj.weight"])
    return {
        "positional_embedding": pos,
        "attention": {
            "query": split("q_proj"), "key": split("k_proj"), "value": split("v_proj"),
            "out": {"kernel": out_weight.T.reshape(num_heads, head_dim, -1),
                    "bias": np.asarray(state["c_proj.bias"])},
        },
    }


def attention_head(spec: HeadSpec, name: str | None = None) -> nn.Module:
    """Registry head "attention": `AttentionPool` with default heads, output width C."""
    del spec
    return AttentionPool(name=name)


def map_head(spec: HeadSpec, name: str | None = None) -> nn.Module:
    """Registry head "map": one-query `MAPHead` with default heads and `mlp_dim = 4 C`."""
    del spec
    return MAPHead(name=name)
