"""Trains several seeds of one architecture, in-process, and predicts with them.

An architecture compiles its init, its train step and its forward pass once, whatever the
number of seeds. Two ways to run the seeds (`FitConfig.seed_parallel`), same numbers:
    "loop"  one single-seed compiled step, called once per seed per step (the seeds' calls
            are dispatched asynchronously, back to back). Fastest on CPU.
    "vmap"  one `jax.vmap` of the step over a leading seed axis: one program for all seeds,
            for accelerators. On XLA:CPU it is slower (measured on the 2-core CPU, LeNet-5,
            3 seeds, batch 64: 59-76 ms/step vs 3 x 17 ms for max pooling, 274 vs 3 x 19
            ms without pooling), because a convolution vmapped over its kernel becomes a
            grouped convolution, which XLA:CPU runs poorly.
Seed s draws its initial parameters from `jax.random.key(s)` (split as in
`poolnets.training`) and its batch order from `numpy.random.default_rng((s, epoch))`
(`poolnets.data.epoch_batches`), so a seed's result does not depend on the other seeds.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from poolnets.data import Split, epoch_batches
from poolnets.training import TrainState
from poolnets.training.optim import make_optimizer, make_schedule
from poolnets.training.steps import train_step

SEED_PARALLEL = ("loop", "vmap")


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """The training budget shared by every variant of a sweep."""

    num_epochs: int = 6
    num_steps: int | None = None  # set: overrides num_epochs
    batch_size: int = 64
    learning_rate: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    max_shift: int = 0  # train-time translation augmentation (0: none, so shift tests are fair)
    optimizer: str = "sgd"  # sgd (Nesterov momentum) | adamw, as poolnets.training.optim
    seed_parallel: str = "loop"  # "loop" (CPU) | "vmap" (accelerators): see the module doc

    def __post_init__(self) -> None:
        if self.seed_parallel not in SEED_PARALLEL:
            raise ValueError(f"seed_parallel must be one of {SEED_PARALLEL}, got "
                             f"{self.seed_parallel!r}")


def _init_fn(model: nn.Module, tx: optax.GradientTransformation, image_shape: tuple) -> Callable:
    def init(key: jax.Array) -> TrainState:
        params_key, dropout_key, pool_key = jax.random.split(key, 3)
        variables = model.init(
            {"params": params_key, "dropout": dropout_key, "pool": pool_key},
            jnp.zeros((1, *image_shape), jnp.float32), train=False,
        )
        return TrainState(
            step=jnp.zeros((), jnp.int32), params=variables["params"],
            batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(variables["params"]),
        )

    return init


def init_states(model: nn.Module, tx: optax.GradientTransformation, seeds: Sequence[int],
                image_shape: tuple) -> TrainState:
    """Stacked initial TrainStates, leading axis = seed; compiled once, unoptimised."""
    keys = jnp.stack([jax.random.split(jax.random.key(s))[0] for s in seeds])
    init = jax.jit(jax.vmap(_init_fn(model, tx, image_shape)))
    return init.lower(keys).compile({"xla_backend_optimization_level": 0})(keys)


def fit_seeds(
    model: nn.Module, train: Split, seeds: Sequence[int], config: FitConfig, *,
    num_classes: int, on_step: Callable[[int], None] | None = None,
) -> tuple[TrainState, dict[str, float]]:
    """Trains `model` once per seed on `train`; returns (stacked states, timing in seconds).

    Each seed follows `poolnets.training`'s recipe: `config.optimizer` with weight decay on
    kernels, linear warmup then cosine decay, softmax cross-entropy.
    """
    import time

    if not seeds:
        raise ValueError(f"seeds must be non-empty, got {seeds!r}")
    steps_per_epoch = len(train) // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size={config.batch_size} exceeds the {len(train)} train images")
    total = config.num_steps or config.num_epochs * steps_per_epoch
    schedule = make_schedule("cosine", config.learning_rate, total,
                             round(config.warmup_epochs * steps_per_epoch))
    tx = make_optimizer(config.optimizer, schedule, momentum=config.momentum,
                        weight_decay=config.weight_decay)
    image_shape = train.images.shape[1:]
    t0 = time.perf_counter()
    stacked = init_states(model, tx, seeds, image_shape)
    one_step = functools.partial(train_step, model=model, tx=tx, num_classes=num_classes,
                             label_smoothing=0.0, max_shift=config.max_shift)
    keys = [jax.random.split(jax.random.key(s))[1] for s in seeds]
    batch = (config.batch_size,)
    if config.seed_parallel == "vmap":
        states, keys = [stacked], [jnp.stack(keys)]
        one_step, batch = jax.vmap(one_step), (len(seeds), *batch)
    else:
        states = [unstack(stacked, i) for i in range(len(seeds))]
    step_fn = jax.jit(one_step, donate_argnums=0).lower(
        states[0], jax.ShapeDtypeStruct((*batch, *image_shape), jnp.float32),
        jax.ShapeDtypeStruct(batch, jnp.int32), keys[0]).compile()
    t1 = time.perf_counter()
    step, epoch = 0, 0
    while step < total:
        streams = [epoch_batches(train, config.batch_size, seed=s, epoch=epoch) for s in seeds]
        for per_seed in zip(*streams, strict=True):
            if step == total:
                break
            if config.seed_parallel == "vmap":
                per_seed = [(np.stack([b[0] for b in per_seed]),
                             np.stack([b[1] for b in per_seed]))]
            for i, (images, labels) in enumerate(per_seed):
                states[i], _ = step_fn(states[i], images, labels, keys[i])
            step += 1
            if on_step is not None:
                on_step(1)
        epoch += 1
    state = states[0] if config.seed_parallel == "vmap" else jax.tree.map(
        lambda *x: jnp.stack(x), *states)
    jax.block_until_ready(state)
    return state, {"compile_s": t1 - t0, "train_s": time.perf_counter() - t1, "steps": total}


def unstack(tree: Any, index: int) -> Any:
    """Seed `index` of a stacked pytree."""
    return jax.tree.map(lambda x: x[index], tree)


def make_predict(model: nn.Module) -> Callable[[Any, jax.Array], jax.Array]:
    """`predict(variables, images (N, ...)) -> logits (N, classes)` float32, eval mode, jitted.

    Random modules get a fixed key (they are deterministic with train=False).
    """
    key = jax.random.key(0)

    @jax.jit
    def predict(variables: Any, images: jax.Array) -> jax.Array:
        out = model.apply(variables, images, train=False, rngs={"dropout": key, "pool": key})
        return out.astype(jnp.float32)

    return predict


def predict_in_chunks(predict: Callable, variables: Any, images: np.ndarray,
                      chunk: int) -> np.ndarray:
    """Logits for all `images`, run in fixed-size chunks (the last one padded): one compile."""
    n = len(images)
    pad = (-n) % chunk
    if pad:
        images = np.concatenate([images, np.repeat(images[:1], pad, axis=0)])
    outs = [predict(variables, images[i:i + chunk]) for i in range(0, len(images), chunk)]
    return np.concatenate(jax.device_get(outs))[:n]
