"""Optimizer and learning-rate schedule from a config (optax)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import optax

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "constant", "step")


def make_schedule(
    name: str,
    learning_rate: float,
    total_steps: int,
    warmup_steps: int,
    *,
    decay_steps: Sequence[int] = (),
    decay_factor: float = 0.1,
) -> Callable[[int], float]:
    """Learning rate per step t (0-based), after a linear warmup 0 -> learning_rate.

    cosine: lr(t) = learning_rate * (1 + cos(pi * (t - warmup) / (total - warmup))) / 2.
    constant: learning_rate.
    step: learning_rate * decay_factor ** (number of decay_steps <= t)  (e.g. He et al. 2016:
        x0.1 at 32k and 48k iterations).
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choices: {', '.join(SCHEDULES)}")
    warmup_steps = min(warmup_steps, total_steps - 1)
    if name == "cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0, learning_rate, warmup_steps, max(total_steps, warmup_steps + 1)
        )
    if name == "step":
        boundaries = {int(s): decay_factor for s in decay_steps if s > 0}
        after = optax.piecewise_constant_schedule(learning_rate, boundaries)
    else:
        after = optax.constant_schedule(learning_rate)
    if warmup_steps == 0:
        return after
    # join_schedules hands the second schedule t - warmup; the step boundaries are absolute.
    shifted = lambda t: after(t + warmup_steps)  # noqa: E731
    return optax.join_schedules(
        [optax.linear_schedule(0.0, learning_rate, warmup_steps), shifted], [warmup_steps]
    )


def decay_mask(params: dict) -> dict:
    """True for kernels (ndim > 1); biases and normalisation scales/offsets (1-D) are not
    decayed."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(
    name: str,
    schedule: Callable[[int], float],
    *,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    nesterov: bool = True,
    grad_clip_norm: float | None = None,
) -> optax.GradientTransformation:
    """sgd: SGD with (Nesterov, if nesterov) momentum plus coupled L2 decay
        (grad += wd * w, kernels only).
    adamw: Adam (b1 = momentum, b2 = 0.999) with decoupled weight decay (Loshchilov & Hutter,
        2019), kernels only.
    grad_clip_norm: the raw gradients are first rescaled to global L2 norm <= grad_clip_norm.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choices: {', '.join(OPTIMIZERS)}")
    if name == "adamw":
        tx = optax.adamw(schedule, b1=momentum, weight_decay=weight_decay, mask=decay_mask)
    else:
        tx = optax.chain(
            optax.add_decayed_weights(weight_decay, mask=decay_mask),
            optax.sgd(schedule, momentum=momentum or None, nesterov=nesterov and momentum > 0),
        )
    if grad_clip_norm is not None:
        tx = optax.chain(optax.clip_by_global_norm(grad_clip_norm), tx)
    return tx
