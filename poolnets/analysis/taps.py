"""Reading and perturbing the output of any named submodule of a Flax (linen) model.

Method used (general, no change to the model): `flax.linen.intercept_methods` wraps every
module method call during `model.apply`; the interceptor lets the call run and, for the
`__call__` of the module whose path is `layer` ("S4", or "stage1/block0/conv" for nested
modules, "/" between names), records the output and returns `output + delta`. With
`delta = 0` the forward pass is unchanged, and d(anything)/d(delta) is the gradient with
respect to that layer's activation: exactly what Grad-CAM needs, with no `sow` calls or
`perturb` hooks inside the model. A module called several times is tapped at every call
(delta must then broadcast to each output); models here call each named layer once.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def module_path(module: nn.Module) -> str:
    """"A/B/C" path of a bound module inside its root model ("" for the root)."""
    return "/".join(str(p) for p in module.scope.path)


def tapped_apply(model: nn.Module, variables: Any, x: jax.Array, layer: str,
                 delta: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """(model output, output of `layer`) for `model.apply(variables, x, train=False)`.

    delta: added to `layer`'s output before the rest of the model sees it (None: nothing
    added). Raises ValueError naming the layers seen when `layer` is never called.
    """
    seen: list[str] = []
    captured: list[jax.Array] = []

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.method_name != "__call__":
            return out
        path = module_path(context.module)
        seen.append(path)
        if path != layer:
            return out
        captured.append(out)
        return out if delta is None else out + delta.astype(out.dtype)

    key = jax.random.key(0)
    with nn.intercept_methods(interceptor):
        y = model.apply(variables, x, train=False, rngs={"dropout": key, "pool": key})
    if not captured:
        names = sorted({p for p in seen if p})
        raise ValueError(f"layer {layer!r} was not called; layers: {names}")
    return y, captured[0]


def layer_shape(model: nn.Module, variables: Any, x: jax.Array, layer: str) -> tuple[int, ...]:
    """Shape of `layer`'s output for input `x` (abstract evaluation, nothing computed)."""
    _, act = jax.eval_shape(lambda v, x: tapped_apply(model, variables, x, layer), variables, x)
    return tuple(act.shape)


def output_and_layer_grad(model: nn.Module, variables: Any, x: jax.Array, layer: str,
                          target: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(activation A of `layer`, d target(y) / dA, y) where y is the model output.

    target: function y -> scalar (e.g. a sum of the chosen class logits over the batch).
    """
    shape = layer_shape(model, variables, x, layer)

    def objective(delta: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        y, act = tapped_apply(model, variables, x, layer, delta)
        return target(y), (act, y)

    grad, (act, y) = jax.grad(objective, has_aux=True)(jnp.zeros(shape, jnp.float32))
    return act, grad, y
