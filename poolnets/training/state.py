"""The training state of a Flax NNX model, and its creation.

A model is split once (`nnx.split`) into its static graph definition and its state; the
state's three kinds of variables travel through jitted steps as plain nested dicts:
`params` (nnx.Param), `batch_stats` (nnx.BatchStat) and `rngs` (the RNG streams' keys and
counters, nnx.RngState), and `nnx.merge(graphdef, ...)` rebuilds the module inside a step.
A model is given to the trainer as a *build*: a callable `build(rngs=nnx.Rngs) -> Module`
(e.g. `functools.partial(poolnets.models.nnx.create, name, num_classes=10)`), so one
function makes the initial state of any seed and a multi-seed trainer can vmap it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

Build = Callable[..., nnx.Module]  # build(rngs=nnx.Rngs) -> the model


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training; the graph definition and the optimizer are
    passed separately.

    step: int32 scalar. params / batch_stats / rngs: the model's nnx.Param, nnx.BatchStat
    and nnx.RngState variables as nested dicts keyed by attribute path (`batch_stats` is {}
    for a model without BatchNorm, `rngs` {} for one without random layers).
    opt_state: the optax state of `params`.
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    rngs: Any
    opt_state: Any


def as_build(model: nnx.Module | Build) -> Build:
    """A build from a model given as a build, or as a module instance (whose own weights
    and RNG state are then the initial state, whatever the seed)."""
    if isinstance(model, nnx.Module):
        return lambda rngs: model
    if not callable(model):
        raise TypeError(f"model must be an nnx.Module or a callable build(rngs=...) -> "
                        f"nnx.Module, got {model!r}")
    return model


def split(module: nnx.Module) -> tuple[nnx.GraphDef, dict, dict, dict]:
    """(graphdef, params, batch_stats, rngs) of `module`, the states as nested dicts.
    Raises ValueError when the module holds other variable kinds (the trainer would drop
    them)."""
    graphdef, params, stats, rngs, rest = nnx.split(
        module, nnx.Param, nnx.BatchStat, nnx.RngState, ...)
    extra = [".".join(map(str, path)) for path, _ in nnx.to_flat_state(rest)]
    if extra:
        raise ValueError(f"{type(module).__name__} holds variables that are neither "
                         f"nnx.Param, nnx.BatchStat nor RNG state: {extra[:5]}")
    return graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(stats), nnx.to_pure_dict(rngs)


def merge(graphdef: nnx.GraphDef, state: TrainState) -> nnx.Module:
    """The module of `state` (its current params, BatchNorm statistics and RNG state)."""
    return nnx.merge(graphdef, state.params, state.batch_stats, state.rngs)


def seed_rngs(key: jax.Array) -> nnx.Rngs:
    """The streams a model is built with: "params" draws its weights, "dropout" and "pool"
    its dropout masks and random pools."""
    params_key, dropout_key, pool_key = jax.random.split(key, 3)
    return nnx.Rngs(params=params_key, dropout=dropout_key, pool=pool_key)


def graphdef_of(build: Build, image_shape: tuple) -> nnx.GraphDef:
    """The graph definition of `build`'s model, built abstractly (nothing computed), after
    checking that the model runs on an image of `image_shape` (H, W, C) in both modes: the
    model's own ValueError/TypeError names a bad argument before any compilation."""
    abstract = nnx.eval_shape(lambda: build(rngs=seed_rngs(jax.random.key(0))))
    graphdef, *states = split(abstract)
    x = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)

    def forward(states: list, x: jax.Array, train: bool) -> jax.Array:
        return nnx.merge(graphdef, *states)(x, train=train)

    for train in (False, True):
        jax.eval_shape(lambda s, x, t=train: forward(s, x, t), states, x)
    return graphdef


def create_train_state(build: nnx.Module | Build, tx: optax.GradientTransformation,
                       key: jax.Array, image_shape: tuple
                       ) -> tuple[nnx.GraphDef, TrainState]:
    """(graphdef, initial state): the model built with `seed_rngs(key)` and the optimizer.

    Runs as one jitted program compiled without backend optimisation: it runs once, and
    op-by-op initialisation (or an optimised compile) of even LeNet-5 costs seconds on CPU.
    """
    graphdef, init = train_state_init(build, tx, image_shape)
    compiled = jax.jit(init).lower(key).compile({"xla_backend_optimization_level": 0})
    return graphdef, compiled(key)


def train_state_init(build: nnx.Module | Build, tx: optax.GradientTransformation,
                     image_shape: tuple
                     ) -> tuple[nnx.GraphDef, Callable[[jax.Array], TrainState]]:
    """(graphdef, `init(key) -> TrainState`), the init uncompiled (`create_train_state`
    jits it; a multi-seed trainer vmaps it over keys)."""
    build = as_build(build)
    graphdef = graphdef_of(build, image_shape)

    def init(key: jax.Array) -> TrainState:
        _, params, stats, rngs = split(build(rngs=seed_rngs(key)))
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=stats,
                          rngs=rngs, opt_state=tx.init(params))

    return graphdef, init


def _is_key(leaf: Any) -> bool:
    return hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def keys_as_data(tree: Any) -> Any:
    """`tree` with typed PRNG keys (the RNG streams' keys) as their uint32 key data, which
    orbax can store."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def keys_from_data(tree: Any, like: Any) -> Any:
    """`tree` from `keys_as_data` form, its keys typed again where `like`'s are (`like`
    None: `tree` as it is)."""
    if like is None:
        return tree
    return jax.tree.map(
        lambda x, t: jax.random.wrap_key_data(x, impl=jax.random.key_impl(t))
        if _is_key(t) else x, tree, like)


def count_params(params: Any) -> int:
    """Number of scalars in a parameter pytree."""
    return int(sum(np.prod(p.shape) for p in jax.tree.leaves(params)))
