"""Using a poolnets model (Flax linen) from Flax NNX through `flax.nnx.bridge.ToNNX`.

The linen module becomes a stateful NNX module: parameters are `nnx.Param`, BatchNorm
statistics `nnx.BatchStat`, and the "params", "dropout" and "pool" RNG streams come from one
`nnx.Rngs`. In training, pass `mutable=["batch_stats"]` so BatchNorm's running statistics are
written back into the NNX module; in evaluation, call it with `train=False`.

Run: `python examples/nnx_bridge.py` (a few steps of SGD on synthetic data, on CPU).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from poolnets.models import create


def build(name: str = "resnet20", *, num_classes: int = 10, input_shape=(8, 32, 32, 3),
          rngs: nnx.Rngs | None = None, **options) -> nnx.Module:
    """`create(name, ...)` wrapped for NNX and initialised on zeros of `input_shape`.

    rngs: streams "params", "dropout" and "pool" (default seeds 0, 1, 2).
    """
    model = create(name, num_classes=num_classes, **options)
    rngs = rngs if rngs is not None else nnx.Rngs(params=0, dropout=1, pool=2)
    return nnx.bridge.ToNNX(model, rngs=rngs).lazy_init(jnp.zeros(input_shape), train=False)


@nnx.jit
def train_step(model: nnx.Module, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array):
    """One SGD step on softmax cross-entropy; returns the loss before the step."""

    def loss_fn(m):
        logits = m(x, train=True, mutable=["batch_stats"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    loss, grads = nnx.value_and_grad(loss_fn)(model)  # gradients of nnx.Param only
    optimizer.update(model, grads)
    return loss


def synthetic_batch(key: jax.Array, n: int = 32, num_classes: int = 10):
    """Images whose class is the brightest of `num_classes` horizontal bands: learnable fast."""
    k1, k2 = jax.random.split(key)
    y = jax.random.randint(k1, (n,), 0, num_classes)
    rows = jnp.arange(32) * num_classes // 32
    bright = (rows[None, :] == y[:, None]).astype(jnp.float32)
    x = bright[:, :, None, None] + 0.3 * jax.random.normal(k2, (n, 32, 32, 3))
    return x, y


def main(steps: int = 30, **options) -> list[float]:
    model = build(**options)
    optimizer = nnx.Optimizer(model, optax.sgd(0.05, momentum=0.9), wrt=nnx.Param)
    losses = []
    for step in range(steps):
        x, y = synthetic_batch(jax.random.key(step))
        losses.append(float(train_step(model, optimizer, x, y)))
    x, y = synthetic_batch(jax.random.key(10_000))
    accuracy = float((model(x, train=False).argmax(-1) == y).mean())
    print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f}; held-out accuracy {accuracy:.2f}")
    return losses


if __name__ == "__main__":
    main(width=0.5)
