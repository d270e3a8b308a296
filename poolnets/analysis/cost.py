"""What a model costs: parameters per layer, XLA's FLOP and byte counts, activation sizes.

FLOPs and bytes come from XLA's own cost analysis of the compiled forward pass
(`jax.jit(f).lower(...).compile().cost_analysis()`), so they count what the backend runs
(a convolution counts 2 * H_out * W_out * C_in * C_out * k_h * k_w: one multiply and one
add per tap, bias and activation extra), not a hand-written formula.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, traverse_util


def params_per_layer(params: Mapping[str, Any]) -> dict[str, int]:
    """Number of parameters of each module that owns parameters, keyed by its path "A/B".

    params: an NNX model's `nnx.to_pure_dict(nnx.state(model, nnx.Param))` (or a Linen
    model's "params" collection). The values sum to `total_params`.
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


def forward_cost(model: nnx.Module, image_shape: tuple[int, ...],
                 batch: int = 1) -> dict[str, float]:
    """`xla_cost` of `model(x, train=False)` (an NNX module; its state is an argument of the
    compiled function, not a constant) on `batch` zero images of shape `image_shape`
    (H, W, C), divided by `batch`: FLOPs and bytes per image."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch!r}")
    graphdef, state = nnx.split(model)

    def forward(state: Any, x: jax.Array) -> jax.Array:
        return nnx.merge(graphdef, state)(x, train=False)

    x = jax.ShapeDtypeStruct((batch, *image_shape), jnp.float32)
    cost = xla_cost(forward, state, x)
    return {k: v / batch for k, v in cost.items()}


def activation_sizes(model: nnx.Module, images: Any) -> dict[str, int]:
    """Elements per example of every submodule's output on the forward pass (eval mode),
    keyed by module path ("A/B"; a method other than `__call__` adds "/<method>").
    Captured with `nnx.capture(..., method_outputs=nnx.Intermediate)` under abstract
    evaluation; a module called twice reports its last call. `peak_activation` takes the
    maximum."""
    graphdef, state = nnx.split(model)

    def outputs(state: Any, x: jax.Array) -> dict[str, jax.Array]:
        net = nnx.merge(graphdef, state)
        _, captured = nnx.capture(net, nnx.Intermediate,
                                  method_outputs=nnx.Intermediate)(x, train=False)
        found = {}
        for path, variable in nnx.to_flat_state(captured):
            value = variable.get_value()
            calls = value if isinstance(value, tuple) else (value,)
            arrays = [c for c in calls if isinstance(c, jax.Array)]
            if arrays:  # methods returning modules or ops (stages(), ...) are not outputs
                found["/".join(str(p) for p in path if p != "__call__")] = arrays[-1]
        return found

    shapes = jax.eval_shape(outputs, state, images)
    return {name: int(np.prod(out.shape[1:])) for name, out in shapes.items()}


def peak_activation(model: nnx.Module, images: Any) -> tuple[str, int]:
    """(module path, elements per example) of the largest single module output."""
    sizes = activation_sizes(model, images)
    name = max(sizes, key=sizes.__getitem__)
    return name, sizes[name]
