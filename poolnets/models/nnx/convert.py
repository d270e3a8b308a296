"""Linen variables <-> NNX state: the NNX zoo's attribute paths are the Linen zoo's module
names, but for the strided-conv downsample's inner convolution (NNX `conv`, Linen
`Conv_0`) and list indices (ints in NNX, their decimal strings in Linen). Converted
weights (`poolnets.weights`, Linen layout) reach an NNX model through these paths."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import nnx, traverse_util

COLLECTIONS = {"params": nnx.Param, "batch_stats": nnx.BatchStat}


def linen_path(collection: str, path: tuple) -> tuple[str, ...]:
    """The Linen variables key of NNX variable `path` in `collection`."""
    return (collection, *("Conv_0" if p == "conv" else str(p) for p in path))


def to_linen(params: dict, batch_stats: dict) -> tuple[dict, dict[tuple, tuple]]:
    """(Linen-layout variables {"params", "batch_stats"} of the NNX state dicts, and the
    map from each Linen key to its (collection, NNX path))."""
    flat, where = {}, {}
    for collection, tree in (("params", params), ("batch_stats", batch_stats)):
        for path, value in traverse_util.flatten_dict(tree).items():
            key = linen_path(collection, path)
            flat[key], where[key] = value, (collection, path)
    return traverse_util.unflatten_dict(flat), where


def from_linen(variables: dict, where: dict[tuple, tuple], like: dict[str, dict]
               ) -> dict[str, dict]:
    """{"params", "batch_stats"} NNX state dicts from Linen-layout `variables`, with the
    keys `where` maps (from `to_linen`) and the dtypes of `like` (the same dicts)."""
    flat = traverse_util.flatten_dict(variables)
    like_flat = {c: traverse_util.flatten_dict(like[c]) for c in like}
    out: dict[str, dict] = {c: {} for c in like}
    for key, (collection, path) in where.items():
        out[collection][path] = jnp.asarray(flat[key], like_flat[collection][path].dtype)
    return {c: traverse_util.unflatten_dict(v) for c, v in out.items()}


def load_linen(model: nnx.Module, variables: dict[str, Any]) -> None:
    """Puts Linen `variables` ({"params", "batch_stats"}) into `model` in place. Raises
    ValueError listing the keys that one side has and the other lacks."""
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    stats = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
    _, where = to_linen(params, stats)
    have = set(traverse_util.flatten_dict({c: variables.get(c, {}) for c in COLLECTIONS}))
    if have != set(where):
        diff = sorted("/".join(k) for k in have ^ set(where))
        raise ValueError(f"variables do not fit {type(model).__name__}: {diff[:8]} "
                         f"({len(diff)} keys on one side only)")
    new = from_linen(variables, where, {"params": params, "batch_stats": stats})
    for collection, kind in COLLECTIONS.items():
        state = nnx.state(model, kind)
        nnx.replace_by_pure_dict(state, new[collection])
        nnx.update(model, state)
