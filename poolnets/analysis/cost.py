"""What a model costs: parameters per layer, XLA's FLOP and byte counts, activation sizes.

FLOPs and bytes come from XLA's own cost analysis of the compiled forward pass
(`jax.jit(f).lower(...).compile().cost_analysis()`), so they count what the backend runs
(a convolution counts 2 * H_out * W_out * C_in * C_out * k_h * k_w: one multiply and one
add per tap, bias and activation extra), not a hand-written formula.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util


def params_per_layer(params: Mapping[str, Any]) -> dict[str, int]:
    """Number of parameters of each module that owns parameters, keyed by its path "A/B".

    params: the "params" collection of a Flax model. The values sum to `total_params`.
    """
    counts: dict[str, int] = {}
    for path, leaf in traverse_util.flatten_dict(dict(params)).items():
        layer = "/".join(str(p) for p in path[:-1]) or str(path[-1])
        counts[layer] = counts.get(layer, 0) + int(np.prod(np.shape(leaf)))
    return counts


def total_params(params: Mapping[str, Any]) -> int:
    """Number of scalars in a parameter pytree."""
    return int(sum(np.prod(np.shape(p)) for p in jax.tree.leaves(params)))


def _first_cost(analysis: Any) -> dict[str, float]:
    # Older jax returned a one-element list of dicts; newer returns the dict.
    if isinstance(analysis, list | tuple):
        analysis = analysis[0] if analysis else {}
    return dict(analysis or {})


def xla_cost(fn: Any, *args: Any) -> dict[str, float]:
    """XLA's cost analysis of `jax.jit(fn)(*args)`: {"flops", "bytes_accessed"}, plus
    {"temp_bytes", "argument_bytes", "output_bytes"} from the compiled memory analysis.

    args may be arrays or `jax.ShapeDtypeStruct`s. Counts are for the whole call (divide by
    the batch size for per-example figures).
    """
    compiled = jax.jit(fn).lower(*args).compile()
    cost = _first_cost(compiled.cost_analysis())
    out = {"flops": float(cost.get("flops", 0.0)),
           "bytes_accessed": float(cost.get("bytes accessed", 0.0))}
    memory = compiled.memory_analysis()
    if memory is not None:
        out["temp_bytes"] = float(memory.temp_size_in_bytes)
        out["argument_bytes"] = float(memory.argument_size_in_bytes)
        out["output_bytes"] = float(memory.output_size_in_bytes)
    return out


def forward_cost(model: nn.Module, variables: Any, image_shape: tuple[int, ...],
                 batch: int = 1) -> dict[str, float]:
    """`xla_cost` of `model.apply(variables, x, train=False)` on `batch` zero images of
    shape `image_shape` (H, W, C), divided by `batch`: FLOPs and bytes per image."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch!r}")
    key = jax.random.key(0)

    def forward(variables: Any, x: jax.Array) -> jax.Array:
        return model.apply(variables, x, train=False, rngs={"dropout": key, "pool": key})

    x = jax.ShapeDtypeStruct((batch, *image_shape), jnp.float32)
    cost = xla_cost(forward, variables, x)
    return {k: v / batch for k, v in cost.items()}


def activation_sizes(model: nn.Module, variables: Any, images: jax.Array) -> dict[str, int]:
    """Elements per example of every module output on the forward pass, keyed by module path.

    Captured with Flax's `capture_intermediates` (the `__call__` output of each submodule;
    the model's own output is keyed "__call__"). `peak_activation` takes the maximum.
    """
    key = jax.random.key(0)
    _, state = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=False, capture_intermediates=True,
                                 mutable=["intermediates"], rngs={"dropout": key, "pool": key}),
        variables, images)
    sizes = {}
    for path, leaf in traverse_util.flatten_dict(state["intermediates"]).items():
        name = "/".join(p for p in path if p != "__call__") or "__call__"
        for out in jax.tree.leaves(leaf):
            sizes[name] = int(np.prod(out.shape[1:]))
    return sizes


def peak_activation(model: nn.Module, variables: Any, images: jax.Array) -> tuple[str, int]:
    """(module path, elements per example) of the largest single module output."""
    sizes = activation_sizes(model, variables, images)
    name = max(sizes, key=sizes.__getitem__)
    return name, sizes[name]
