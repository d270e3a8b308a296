"""Optimizer and learning-rate schedule from a config (optax)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import optax

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "constant")


def make_schedule(
    name: str, learning_rate: float, total_steps: int, warmup_steps: int
) -> Callable[[int], float]:
    """Learning rate per step.

    cosine: linear warmup 0 -> learning_rate over warmup_steps, then
        lr(t) = learning_rate * (1 + cos(pi * (t - warmup) / (total - warmup))) / 2.
    constant: the same warmup, then learning_rate.
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choices: {', '.join(SCHEDULES)}")
    warmup_steps = min(warmup_steps, total_steps - 1)
    if name == "cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0, learning_rate, warmup_steps, max(total_steps, warmup_steps + 1)
        )
    if warmup_steps == 0:
        return optax.constant_schedule(learning_rate)
    return optax.join_schedules(
        [optax.linear_schedule(0.0, learning_rate, warmup_steps),
         optax.constant_schedule(learning_rate)],
        [warmup_steps],
    )


def decay_mask(params: dict) -> dict:
    """True for kernels (ndim > 1); biases and normalisation scales are not decayed."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(
    name: str,
    schedule: Callable[[int], float],
    *,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> optax.GradientTransformation:
    """sgd: SGD with Nesterov momentum plus coupled L2 decay (grad += wd * w, kernels only).
    adamw: Adam with decoupled weight decay (Loshchilov & Hutter, 2019), kernels only.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choices: {', '.join(OPTIMIZERS)}")
    if name == "adamw":
        return optax.adamw(schedule, weight_decay=weight_decay, mask=decay_mask)
    return optax.chain(
        optax.add_decayed_weights(weight_decay, mask=decay_mask),
        optax.sgd(schedule, momentum=momentum or None, nesterov=momentum > 0),
    )
