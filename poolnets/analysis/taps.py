"""Reading and perturbing the output of any named submodule of a Flax NNX model.

Method used (general, no change to the model's code): the forward pass runs on a copy of
the model (`nnx.merge` of its split state) in which the module at path `layer` ("S4", or
"stage1/block0/conv" for nested modules, "/" between attribute names or list indices) has
its class swapped for a subclass whose `__call__` records the output and returns
`output + delta`. The subclass keeps every `isinstance` dispatch of the model intact. With
`delta = 0` the forward pass is unchanged, and d(anything)/d(delta) is the gradient with
respect to that layer's activation: exactly what Grad-CAM needs, with no `sow` calls or
`perturb` hooks inside the model. A module called several times is tapped at every call
(delta must then broadcast to each output); the first call's output is returned.
Where only the maps of the model's own `feature_info` stages are wanted, its
`forward_intermediates` gives them without any of this.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx


def module_names(model: nnx.Module) -> list[str]:
    """"A/B/C" paths of every submodule of `model` (the root excluded)."""
    return sorted("/".join(map(str, path)) for path, node in nnx.iter_graph(model)
                  if path and isinstance(node, nnx.Module))


def find_module(model: nnx.Module, layer: str) -> nnx.Module:
    """The submodule at path `layer`; ValueError naming the modules when there is none."""
    node: Any = model
    for part in layer.split("/") if layer else []:
        try:
            node = node[int(part)] if part.isdigit() else getattr(node, part)
        except (AttributeError, IndexError, KeyError, TypeError):
            node = None
            break
    if not isinstance(node, nnx.Module) or node is model:
        raise ValueError(f"layer {layer!r} is not a module of {type(model).__name__}; "
                         f"layers: {module_names(model)}")
    return node


def tapped_call(model: nnx.Module, x: jax.Array, layer: str,
                delta: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """(model output, output of `layer`) for `model(x, train=False)` on a copy of `model`.

    delta: added to `layer`'s output before the rest of the model sees it (None: nothing
    added). Raises ValueError naming the modules when `layer` is none of them or is never
    called.
    """
    graphdef, state = nnx.split(model)
    copy = nnx.merge(graphdef, state)
    target = find_module(copy, layer)
    captured: list[jax.Array] = []
    base = type(target)
    checking = [False]

    def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = base.__call__(self, *args, **kwargs)
        if checking[0]:
            return out
        captured.append(out)
        return out if delta is None else out + delta.astype(out.dtype)

    methods: dict[str, Any] = {"__call__": __call__}
    if hasattr(base, "output_shape"):
        # A pool that evaluates itself abstractly for its shape (the model's input check
        # asks it before the forward) is not tapped then: that call's output is a tracer
        # of jax.eval_shape, which would leak out as the layer's activation.
        def output_shape(self: Any, *args: Any, **kwargs: Any) -> Any:
            checking[0] = True
            try:
                return base.output_shape(self, *args, **kwargs)
            finally:
                checking[0] = False

        methods["output_shape"] = output_shape
    target.__class__ = type(f"Tapped{base.__name__}", (base,), methods)
    y = copy(x, train=False)
    if not captured:
        raise ValueError(f"layer {layer!r} was not called; layers: {module_names(model)}")
    return y, captured[0]


def layer_shape(model: nnx.Module, x: Any, layer: str) -> tuple[int, ...]:
    """Shape of `layer`'s output for input `x` (abstract evaluation, nothing computed)."""
    graphdef, state = nnx.split(model)
    _, act = jax.eval_shape(
        lambda s, x: tapped_call(nnx.merge(graphdef, s), x, layer), state, x)
    return tuple(act.shape)


def output_and_layer_grad(model: nnx.Module, x: jax.Array, layer: str,
                          target: Callable[[jax.Array], jax.Array]
                          ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(activation A of `layer`, d target(y) / dA, y) where y is the model output.

    target: function y -> scalar (e.g. a sum of the chosen class logits over the batch).
    """
    shape = layer_shape(model, x, layer)

    def objective(delta: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        y, act = tapped_call(model, x, layer, delta)
        return target(y), (act, y)

    grad, (act, y) = jax.grad(objective, has_aux=True)(jnp.zeros(shape, jnp.float32))
    return act, grad, y
