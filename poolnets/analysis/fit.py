"""Trains several seeds of one architecture, in-process, and predicts with them.

The training is `poolnets.training`'s: a training config (`base_config()` fields) gives the
step counts, learning-rate schedule and optimizer (`poolnets.training.optim.make_recipe`),
each seed's initial state is `train_state_init` (the NNX model built from
`split(key(seed))[0]`) and its steps run `poolnets.training.steps.train_step` with
`split(key(seed))[1]`, as `train.py` would with `--config.seed=<seed>`; only the data
stays in memory (float32 model input, optionally
shifted by `config.augment.max_shift`) instead of going through the dataset pipeline.
An architecture compiles its init, its train step and its forward pass once, whatever the
number of seeds. Two ways to run the seeds (`seed_parallel`), same numbers:
    "loop"  one single-seed compiled step, called once per seed per step (the seeds' calls
            are dispatched asynchronously, back to back). Fastest on CPU.
    "vmap"  one `jax.vmap` of the step over a leading seed axis: one program for all seeds,
            for accelerators. On XLA:CPU it is slower (measured on the 2-core CPU, LeNet-5,
            3 seeds, batch 64: 59-76 ms/step vs 3 x 17 ms for max pooling, 274 vs 3 x 19
            ms without pooling), because a convolution vmapped over its kernel becomes a
            grouped convolution, which XLA:CPU runs poorly.
Seed s draws its batch order from `numpy.random.default_rng((s, epoch))`
(`poolnets.data.epoch_batches`), so a seed's result does not depend on the other seeds.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from poolnets.data import Split, epoch_batches
from poolnets.training import TrainState
from poolnets.training.optim import make_recipe
from poolnets.training.state import Build, merge, train_state_init
from poolnets.training.steps import train_step

SEED_PARALLEL = ("loop", "vmap")


def fit_seeds(
    build: Build, train: Split, seeds: Sequence[int], config: Any, *,
    num_classes: int, seed_parallel: str = "loop",
    on_step: Callable[[int], None] | None = None,
) -> tuple[nnx.GraphDef, TrainState, dict[str, float]]:
    """Trains the NNX model of `build` (`rngs -> nnx.Module`) once per seed on `train`
    (float32 model input) with the recipe of the training config `config`; returns (the
    graph definition, stacked states with leading axis = seed, timing in seconds and the
    step count)."""
    if not seeds:
        raise ValueError(f"seeds must be non-empty, got {seeds!r}")
    if seed_parallel not in SEED_PARALLEL:
        raise ValueError(f"seed_parallel must be one of {SEED_PARALLEL}, got {seed_parallel!r}")
    recipe = make_recipe(config, len(train))
    max_shift = (config.augment.max_shift or 0) if config.augment.enabled else 0
    image_shape = train.images.shape[1:]
    t0 = time.perf_counter()
    init_keys, keys = zip(*(jax.random.split(jax.random.key(s)) for s in seeds), strict=True)
    init_keys = jnp.stack(init_keys)
    graphdef, init = train_state_init(build, recipe.tx, image_shape)
    init = jax.jit(jax.vmap(init))
    stacked = init.lower(init_keys).compile({"xla_backend_optimization_level": 0})(init_keys)
    one_step = functools.partial(train_step, model=graphdef, tx=recipe.tx,
                                 num_classes=num_classes,
                                 label_smoothing=config.label_smoothing, max_shift=max_shift)
    batch = (config.batch_size,)
    if seed_parallel == "vmap":
        states, keys = [stacked], [jnp.stack(keys)]
        one_step, batch = jax.vmap(one_step), (len(seeds), *batch)
    else:
        states = [unstack(stacked, i) for i in range(len(seeds))]
    step_fn = jax.jit(one_step, donate_argnums=0).lower(
        states[0], jax.ShapeDtypeStruct((*batch, *image_shape), jnp.float32),
        jax.ShapeDtypeStruct(batch, jnp.int32), keys[0]).compile()
    t1 = time.perf_counter()
    step, total = 0, recipe.total_steps
    for epoch in range(recipe.num_epochs):
        streams = [epoch_batches(train, config.batch_size, seed=s, epoch=epoch) for s in seeds]
        for per_seed in zip(*streams, strict=True):
            if step == total:
                break
            if seed_parallel == "vmap":
                per_seed = [(np.stack([b[0] for b in per_seed]),
                             np.stack([b[1] for b in per_seed]))]
            for i, (images, labels) in enumerate(per_seed):
                states[i], _ = step_fn(states[i], images, labels, keys[i])
            step += 1
            if on_step is not None:
                on_step(1)
    state = states[0] if seed_parallel == "vmap" else jax.tree.map(
        lambda *x: jnp.stack(x), *states)
    jax.block_until_ready(state)
    return graphdef, state, {"compile_s": t1 - t0, "train_s": time.perf_counter() - t1,
                             "steps": total}


def unstack(tree: Any, index: int) -> Any:
    """Seed `index` of a stacked pytree."""
    return jax.tree.map(lambda x: x[index], tree)


def make_predict(graphdef: nnx.GraphDef) -> Callable[[TrainState, jax.Array], jax.Array]:
    """`predict(state, images (N, ...)) -> logits (N, classes)` float32, eval mode (random
    layers deterministic, nothing drawn), jitted."""

    @jax.jit
    def predict(state: TrainState, images: jax.Array) -> jax.Array:
        return merge(graphdef, state)(images, train=False).astype(jnp.float32)

    return predict


def predict_in_chunks(predict: Callable, state: TrainState, images: np.ndarray,
                      chunk: int) -> np.ndarray:
    """Logits for all `images`, run in fixed-size chunks (the last one padded): one compile."""
    n = len(images)
    pad = (-n) % chunk
    if pad:
        images = np.concatenate([images, np.repeat(images[:1], pad, axis=0)])
    outs = [predict(state, images[i:i + chunk]) for i in range(0, len(images), chunk)]
    return np.concatenate(jax.device_get(outs))[:n]
