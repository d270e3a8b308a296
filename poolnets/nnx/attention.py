"""NNX attention heads: CLIP's attention pooling (`AttentionPool`; Radford et al., "Learning
Transferable Visual Models From Natural Language Supervision", ICML 2021,
arXiv:2103.00020) and a multi-head attention probe (`MAPHead`; Zhai et al., "Scaling Vision
Transformers", CVPR 2022, arXiv:2106.04560, as big_vision's MAPHead).

Both flatten `(N, *spatial, C)` into tokens `(N, T, C)` and let learned queries attend over
them. `num_heads=None` picks `C // 64` heads when 64 divides C, else 1. `load_clip` loads
a CLIP/OpenCLIP `AttentionPool2d` state dict into an `AttentionPool`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from poolnets.nnx._base import Pool, Shape, check_in_features, check_shape

HEAD_WIDTH = 64  # CLIP's attention heads are 64 wide


def resolve_num_heads(num_heads: int | None, features: int) -> int:
    """Heads for `features` channels: the given count (which must divide it) or the default."""
    if num_heads is None:
        return features // HEAD_WIDTH if features % HEAD_WIDTH == 0 else 1
    if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
        raise ValueError(f"num_heads must be a positive int or None; got num_heads={num_heads!r}")
    if features % num_heads:
        raise ValueError(f"num_heads={num_heads} must divide in_features={features}")
    return num_heads


def _tokens(module: Pool, x: jax.Array) -> jax.Array:
    module.output_shape(x.shape)
    # The token count explicitly: reshape(N, -1, C) cannot infer it for an empty batch.
    return x.reshape(x.shape[0], math.prod(x.shape[1:-1]), x.shape[-1])


class AttentionPool(Pool):
    """CLIP attention pooling, N-d: `(N, *spatial_shape, in_features) -> (N, output_dim or
    in_features)`. The token mean is prepended, a learned `positional_embedding`
    `(prod(spatial_shape) + 1, C)` (stddev `C ** -0.5`, as CLIP) is added, and multi-head
    attention with biases is evaluated for the one query at the mean token. The embedding
    fixes the spatial shape: another raises a ValueError.
    """

    def __init__(self, in_features: int, spatial_shape: Sequence[int], *,
                 num_heads: int | None = None, output_dim: int | None = None,
                 dtype: Any = None, param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
        self.in_features = check_in_features(in_features)
        self.spatial_shape = check_shape("spatial_shape", spatial_shape)
        if not self.spatial_shape or min(self.spatial_shape) < 1:
            raise ValueError(f"spatial_shape must be one positive int per spatial dim; got "
                             f"spatial_shape={spatial_shape!r}")
        self.output_dim = check_in_features(output_dim, optional=True, name="output_dim")
        self.num_heads = resolve_num_heads(num_heads, self.in_features)
        rows = math.prod(self.spatial_shape) + 1
        init = nnx.initializers.normal(self.in_features ** -0.5)
        self.positional_embedding = nnx.Param(
            init(rngs.params(), (rows, self.in_features), param_dtype))
        self.attention = nnx.MultiHeadAttention(
            self.num_heads, self.in_features, self.in_features, self.output_dim or self.in_features,
            dtype=dtype, param_dtype=param_dtype, decode=False, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        tokens = _tokens(self, x)
        tokens = jnp.concatenate([tokens.mean(axis=1, keepdims=True), tokens], axis=1)
        tokens = tokens + self.positional_embedding[...].astype(tokens.dtype)
        return self.attention(tokens[:, :1], tokens)[:, 0]

    def output_shape(self, input_shape: Sequence[int]) -> Shape:
        shape = check_shape("input shape", input_shape)
        self.check_input(shape)
        if shape[1:-1] != self.spatial_shape:
            raise ValueError(
                f"AttentionPool was built for spatial_shape={self.spatial_shape} (its positional"
                f" embedding); got input shape {shape}, expected (N, *{self.spatial_shape}, C)"
            )
        return (shape[0], self.output_dim or self.in_features)


class MAPHead(Pool):
    """Multi-head attention probe (big_vision's MAPHead; Zhai et al., CVPR 2022):
    `num_queries` learned `probe` vectors attend over the tokens (no positional
    embedding), then a pre-LayerNorm residual MLP `z = a + MLP(LayerNorm(a))`,
    `MLP = Linear(mlp_dim) -> GELU -> Linear(C)`. `(N, *spatial, C) -> (N, C)`, or
    `(N, num_queries, C)` for several queries; any spatial shape."""

    def __init__(self, in_features: int, *, num_heads: int | None = None,
                 mlp_dim: int | None = None, num_queries: int = 1, dtype: Any = None,
                 param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
        c = self.in_features = check_in_features(in_features)
        if isinstance(num_queries, bool) or not isinstance(num_queries, int) or num_queries < 1:
            raise ValueError(f"num_queries must be a positive int; got {num_queries!r}")
        self.num_queries = num_queries
        self.num_heads = resolve_num_heads(num_heads, c)
        mlp_dim = check_in_features(mlp_dim, optional=True, name="mlp_dim") or 4 * c
        xavier = nnx.initializers.xavier_uniform()
        self.probe = nnx.Param(xavier(rngs.params(), (1, num_queries, c), param_dtype))
        self.attention = nnx.MultiHeadAttention(
            self.num_heads, c, kernel_init=xavier, dtype=dtype, param_dtype=param_dtype,
            decode=False, rngs=rngs)
        self.norm = nnx.LayerNorm(c, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.mlp_in = nnx.Linear(c, mlp_dim, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.mlp_out = nnx.Linear(mlp_dim, c, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        tokens = _tokens(self, x)
        queries = jnp.broadcast_to(self.probe[...].astype(tokens.dtype),
                                   (tokens.shape[0], self.num_queries, self.in_features))
        attended = self.attention(queries, tokens)
        hidden = self.mlp_out(nnx.gelu(self.mlp_in(self.norm(attended))))
        out = attended + hidden
        return out[:, 0] if self.num_queries == 1 else out

    def output_shape(self, input_shape: Sequence[int]) -> Shape:
        shape = check_shape("input shape", input_shape)
        self.check_input(shape)
        if len(shape) < 3:
            raise ValueError(f"expected a feature map (N, *spatial, C); got shape {shape}")
        queries = () if self.num_queries == 1 else (self.num_queries,)
        return (shape[0], *queries, self.in_features)


def load_clip(module: AttentionPool, state: Mapping[str, Any]) -> AttentionPool:
    """Sets `module`'s parameters from a CLIP/OpenCLIP `AttentionPool2d` state dict (arrays
    under torch's names: `positional_embedding`, `q_proj.weight`, ..., `c_proj.bias`) and
    returns it; an abstract module (`nnx.eval_shape`) gets concrete values.

    Torch `Linear` weights are `(out, in)`; Flax's attention kernels split the feature axis
    into heads: query/key/value `W.T -> (C, heads, C // heads)`, output projection
    `W.T -> (heads, C // heads, out)`. CLIP flattens NCHW maps in row-major spatial order,
    as `AttentionPool` flattens channels-last ones, so the positional embedding carries
    over as it is. Every array must have the torch shape of `module`'s layout; a ValueError
    names the first that does not, before anything is changed.
    """
    if not isinstance(module, AttentionPool):
        raise TypeError(f"module must be a poolnets.nnx.AttentionPool; got {type(module)!r}")
    c, heads = module.in_features, module.num_heads
    out = module.output_dim or c
    attention = module.attention
    # (torch name, its torch shape here, the Param it sets, torch array -> Flax layout)
    layout: list[tuple[str, tuple[int, ...], nnx.Param, Any]] = [
        ("positional_embedding", (math.prod(module.spatial_shape) + 1, c),
         module.positional_embedding, lambda a: a),
        ("c_proj.weight", (out, c), attention.out.kernel,
         lambda a: a.T.reshape(heads, c // heads, out)),
        ("c_proj.bias", (out,), attention.out.bias, lambda a: a),
    ]
    for prefix, layer in (("q_proj", attention.query), ("k_proj", attention.key),
                          ("v_proj", attention.value)):
        layout += [(f"{prefix}.weight", (c, c), layer.kernel,
                    lambda a: a.T.reshape(c, heads, c // heads)),
                   (f"{prefix}.bias", (c,), layer.bias, lambda a: a.reshape(heads, c // heads))]
    arrays = {}
    for name, shape, _, _ in layout:
        if name not in state:
            raise ValueError(f"the CLIP state dict has no {name!r}; it has {sorted(state)}")
        arrays[name] = np.asarray(state[name])
        if arrays[name].shape != shape:
            raise ValueError(
                f"CLIP {name} has shape {arrays[name].shape}; this AttentionPool (in_features="
                f"{c}, spatial_shape={module.spatial_shape}, output_dim={module.output_dim}) "
                f"needs {shape}"
            )
    for name, _, param, to_flax in layout:
        param.set_value(jnp.asarray(to_flax(arrays[name]), param.dtype))
    return module
