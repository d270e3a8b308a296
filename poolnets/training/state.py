"""The training state pytree and its creation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training; model and optimizer are passed separately.

    step: int32 scalar. params / batch_stats: the model's collections (`batch_stats` is {}
    for models without BatchNorm). opt_state: the optax state of `params`.
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any

    def variables(self) -> dict[str, Any]:
        """The `variables` argument of `model.apply`."""
        if self.batch_stats:
            return {"params": self.params, "batch_stats": self.batch_stats}
        return {"params": self.params}


def create_train_state(
    model: nn.Module, tx: optax.GradientTransformation, key: jax.Array, image_shape: tuple
) -> TrainState:
    """Initialises the model on one zero image of `image_shape` (H, W, C) and the optimizer.

    Runs as one jitted program compiled without backend optimisation: it runs once, and
    op-by-op initialisation (or an optimised compile) of even LeNet-5 costs seconds on CPU.
    """
    init = train_state_init(model, tx, image_shape)
    compiled = jax.jit(init).lower(key).compile({"xla_backend_optimization_level": 0})
    return compiled(key)


def train_state_init(
    model: nn.Module, tx: optax.GradientTransformation, image_shape: tuple
) -> Callable[[jax.Array], TrainState]:
    """`init(key) -> TrainState`, uncompiled (`create_train_state` jits it; a multi-seed
    trainer vmaps it over keys). The key splits into the params, dropout and pool keys."""

    def init(key: jax.Array) -> TrainState:
        params_key, dropout_key, pool_key = jax.random.split(key, 3)
        variables = model.init(
            {"params": params_key, "dropout": dropout_key, "pool": pool_key},
            jnp.zeros((1, *image_shape), jnp.float32),
            train=False,
        )
        params = variables["params"]
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            batch_stats=variables.get("batch_stats", {}),
            opt_state=tx.init(params),
        )

    return init


def count_params(params: Any) -> int:
    """Number of scalars in a parameter pytree."""
    return int(sum(np.prod(p.shape) for p in jax.tree.leaves(params)))
