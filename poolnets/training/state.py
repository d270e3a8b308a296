"""The training state pytree and its creation."""

from __future__ import annotations

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

    compiled = jax.jit(init).lower(key).compile({"xla_backend_optimization_level": 0})
    return compiled(key)


def count_params(params: Any) -> int:
    """Number of scalars in a parameter pytree."""
    return int(sum(np.prod(p.shape) for p in jax.tree.leaves(params)))
