"""Jit-compiled, data-parallel train and eval steps.

One program runs over a 1-D `jax.sharding.Mesh` of all devices (axis "data"): batches are
sharded along their leading axis, the TrainState is replicated. The model is an NNX graph
definition (static); `poolnets.training.state.merge` rebuilds the module from the state.
Under jit, XLA's SPMD partitioner inserts the cross-device reductions, so the loss, the
gradients and BatchNorm's batch statistics are those of the global batch, whatever the device count.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from poolnets.data import Preprocess, preprocess, random_shift
from poolnets.training.state import TrainState, merge

DATA_AXIS = "data"
Metrics = dict[str, jax.Array]


def make_mesh(devices: list | None = None) -> Mesh:
    """A 1-D mesh over `devices` (default: all devices) with axis name "data"."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def train_step(
    state: TrainState,
    images: jax.Array,
    labels: jax.Array,
    key: jax.Array,
    *,
    model: nnx.GraphDef,
    tx: optax.GradientTransformation,
    num_classes: int,
    label_smoothing: float,
    max_shift: int = 0,
    preprocess_spec: Preprocess | None = None,
) -> tuple[TrainState, Metrics]:
    """One SGD step on a global batch: images (B, H, W, C) as stored, labels (B,) int32.

    preprocess_spec: how stored images become model input (`poolnets.data.preprocess`,
    augmentation included); None: images are float32 model input and only `max_shift`
    random translation is applied. Augmentation draws from `fold_in(key, state.step)`;
    dropout and random pools from the model's own RNG streams (`state.rngs`, whose counters
    the step advances and returns), so a resume reproduces every step exactly.
    loss = mean over the batch of softmax cross-entropy against smoothed one-hot targets
    (1 - label_smoothing) * onehot + label_smoothing / num_classes. BatchNorm normalises
    with the statistics of the global batch and returns its updated running statistics.
    Metrics: loss, accuracy, grad_norm (global L2 norm of the raw gradients) and finite
    (loss and grad_norm both finite).
    """
    shift_key = jax.random.fold_in(key, state.step)
    if preprocess_spec is None:
        images = random_shift(shift_key, images, max_shift)
    else:
        images = preprocess(images, shift_key, preprocess_spec)
    targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)

    def loss_fn(params: Any) -> tuple[jax.Array, tuple[jax.Array, Any, Any]]:
        net = merge(model, state.replace(params=params))
        logits = net(images, train=True).astype(jnp.float32)
        loss = optax.softmax_cross_entropy(logits, targets).mean()
        return loss, (logits, nnx.to_pure_dict(nnx.state(net, nnx.BatchStat)),
                      nnx.to_pure_dict(nnx.state(net, nnx.RngState)))

    (loss, (logits, batch_stats, rngs)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params
    )
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    new_state = state.replace(
        step=state.step + 1,
        params=optax.apply_updates(state.params, updates),
        batch_stats=batch_stats,
        rngs=rngs,
        opt_state=opt_state,
    )
    accuracy = jnp.mean(jnp.argmax(logits, -1) == labels)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    return new_state, {"loss": loss, "accuracy": accuracy, "grad_norm": grad_norm,
                       "finite": finite}


def eval_step(
    state: TrainState,
    images: jax.Array,
    labels: jax.Array,
    mask: jax.Array,
    *,
    model: nnx.GraphDef,
    preprocess_spec: Preprocess | None = None,
) -> Metrics:
    """Sums over the unmasked examples: {"loss_sum", "correct", "count"}.

    loss is plain (unsmoothed) softmax cross-entropy. The model runs with train=False
    (running BatchNorm statistics, no dropout, deterministic pools; no RNG is drawn).
    """
    if preprocess_spec is not None:
        images = preprocess(images, None, preprocess_spec)
    logits = merge(model, state)(images, train=False).astype(jnp.float32)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    weight = mask.astype(jnp.float32)
    return {
        "loss_sum": jnp.sum(loss * weight),
        "correct": jnp.sum((jnp.argmax(logits, -1) == labels) * weight),
        "count": jnp.sum(weight),
    }


def compile_steps(
    mesh: Mesh, state: TrainState, batch_shape: tuple, eval_batch_shape: tuple,
    image_dtype: Any = jnp.float32, **step_kwargs
) -> tuple[Callable, Callable]:
    """Ahead-of-time compiles (train_step, eval_step) for `mesh` and the given global shapes.

    step_kwargs: model (the graph definition), tx, num_classes, label_smoothing, max_shift,
    preprocess_spec (static). The state argument of the train step is donated, so call it as
    `state, m = train(state, ...)`.
    """
    replicated = NamedSharding(mesh, PartitionSpec())
    sharded = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    train = jax.jit(
        functools.partial(train_step, **step_kwargs),
        in_shardings=(replicated, sharded, sharded, replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )
    evaluate = jax.jit(
        functools.partial(eval_step, model=step_kwargs["model"],
                          preprocess_spec=step_kwargs.get("preprocess_spec")),
        in_shardings=(replicated, sharded, sharded, sharded),
        out_shardings=replicated,
    )
    abstract = jax.ShapeDtypeStruct
    state_spec = jax.tree.map(lambda x: abstract(x.shape, x.dtype), state)
    key_spec = jax.eval_shape(lambda: jax.random.key(0))
    train_c = train.lower(
        state_spec,
        abstract(batch_shape, image_dtype),
        abstract(batch_shape[:1], jnp.int32),
        key_spec,
    ).compile()
    eval_c = evaluate.lower(
        state_spec,
        abstract(eval_batch_shape, image_dtype),
        abstract(eval_batch_shape[:1], jnp.int32),
        abstract(eval_batch_shape[:1], jnp.bool_),
    ).compile()
    return train_c, eval_c


def put_batch(mesh: Mesh, *arrays: np.ndarray) -> tuple[jax.Array, ...]:
    """Places host arrays (this process's share of a global batch) sharded along "data"."""
    sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    if jax.process_count() == 1:  # one call for all: a third less host time per batch
        return tuple(jax.device_put(arrays, sharding))
    return tuple(jax.make_array_from_process_local_data(sharding, a) for a in arrays)


def put_replicated(mesh: Mesh, tree: Any) -> Any:
    """Places a pytree replicated over the mesh (every process passes the same values)."""
    sharding = NamedSharding(mesh, PartitionSpec())
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    return jax.tree.map(lambda leaf: _global_replica(leaf, sharding), tree)


def _global_replica(leaf: Any, sharding: NamedSharding) -> jax.Array:
    """A process-local value as one global array: each process fills its own devices."""
    is_key = jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)
    host = np.asarray(jax.device_get(jax.random.key_data(leaf) if is_key else leaf))
    array = jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
    return jax.jit(jax.random.wrap_key_data, out_shardings=sharding)(array) if is_key else array
