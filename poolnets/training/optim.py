"""Optimizer and learning-rate schedule from a config (optax), and the step arithmetic
(steps per epoch, total steps) that both depend on: `make_recipe`, used by the training loop
and by the report's multi-seed trainer alike."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
import optax

from poolnets.training.errors import ConfigError

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


def schedule_table(schedule: Callable[[int], float], num_steps: int) -> np.ndarray:
    """The learning rates of steps 0..num_steps-1 (num_steps,) float32, in one compiled call:
    the loop logs them without an eager evaluation (and its op-by-op compiles) per record."""
    return np.asarray(jax.jit(jax.vmap(schedule))(np.arange(num_steps)))


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


def count_steps(config: Any, num_train: int) -> tuple[int, int]:
    """(steps_per_epoch, total_steps) of a run of `config` on `num_train` training images:
    full batches only (the last partial batch of an epoch is dropped), and config.num_steps
    when set, else config.num_epochs epochs. A batch larger than the data is a ConfigError."""
    steps_per_epoch = num_train // config.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(
            f"config.batch_size={config.batch_size} exceeds the {num_train} training images "
            f"of {config.dataset!r}; choices: 1..{num_train}"
        )
    return steps_per_epoch, config.num_steps or config.num_epochs * steps_per_epoch


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How a run steps: its step counts, learning-rate schedule and optimizer."""

    steps_per_epoch: int
    total_steps: int
    num_epochs: int  # epochs begun: ceil(total_steps / steps_per_epoch)
    schedule: Callable[[int], float]
    tx: optax.GradientTransformation


def make_recipe(config: Any, num_train: int) -> Recipe:
    """The `Recipe` of a training config (`poolnets.training.defaults.base_config` fields)
    on `num_train` training images: warmup and decay epochs become steps, rounded."""
    steps_per_epoch, total_steps = count_steps(config, num_train)
    schedule = make_schedule(
        config.schedule, config.learning_rate, total_steps,
        round(config.warmup_epochs * steps_per_epoch),
        decay_steps=[round(e * steps_per_epoch) for e in config.lr_decay_epochs or ()],
        decay_factor=config.lr_decay_factor,
    )
    tx = make_optimizer(
        config.optimizer, schedule, momentum=config.momentum, weight_decay=config.weight_decay,
        nesterov=config.nesterov, grad_clip_norm=config.grad_clip_norm,
    )
    return Recipe(steps_per_epoch, total_steps, math.ceil(total_steps / steps_per_epoch),
                  schedule, tx)
