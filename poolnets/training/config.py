"""Checks a training config (fields: `poolnets.training.defaults.base_config`) before
anything is computed or written.

Every problem found by `check_config` is a `ConfigError` (a
ValueError) whose one-line message names the field, the bad value and the valid choices;
`train.py` prints it and exits with status 2.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from poolnets.data import DatasetSpec, dataset_spec
from poolnets.training.defaults import base_config
from poolnets.training.optim import OPTIMIZERS, SCHEDULES

DTYPES = ("float32", "bfloat16", "float16")


__all__ = ["ConfigError", "Plan", "base_config", "check_config"]


class ConfigError(ValueError):
    """A config value that cannot work, found before training starts."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """Values derived from a valid config and the dataset."""

    num_classes: int
    image_shape: tuple[int, int, int]
    num_devices: int
    spec: DatasetSpec


def _choice(field: str, value: Any, choices: list[str] | tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"config.{field}={value!r} is not valid; choices: {', '.join(choices)}")


def _positive(config: Any, field: str, kind: type = int) -> None:
    value = config[field]
    ok = isinstance(value, int) if kind is int else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or value <= 0:
        raise ConfigError(f"config.{field}={value!r} must be a positive {kind.__name__}")


def _non_negative(field: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"config.{field}={value!r} must be a number >= 0")


def model_choices() -> list[str]:
    """Names `poolnets.models.create` accepts ([] while no model is registered)."""
    from poolnets import models

    list_models = getattr(models, "list_models", None)
    return list(list_models()) if list_models else []


def check_model(config: Any) -> None:
    """Model name and the downsample/head overrides against the registries."""
    _choice("model.name", config.model.name, model_choices())
    from poolnets import nn as pnn

    for field, registry in (("downsample", "downsample_names"), ("head", "head_names")):
        names = getattr(pnn, registry, None)
        if config.model[field] is not None and names is not None:
            _choice(f"model.{field}", config.model[field], names())


def _check_optimizer(config: Any) -> None:
    _choice("optimizer", config.optimizer, OPTIMIZERS)
    _choice("schedule", config.schedule, SCHEDULES)
    _positive(config, "learning_rate", float)
    for field in ("weight_decay", "warmup_epochs", "momentum"):
        _non_negative(field, config[field])
    if config.grad_clip_norm is not None:
        _positive(config, "grad_clip_norm", float)
    if config.schedule == "step":
        epochs = config.lr_decay_epochs
        if not epochs or any(not isinstance(e, (int, float)) or e <= 0 for e in epochs):
            raise ConfigError(
                f"config.lr_decay_epochs={epochs!r} must be a non-empty tuple of epochs > 0 "
                "for config.schedule='step'"
            )
        if not 0 < config.lr_decay_factor <= 1:
            raise ConfigError(
                f"config.lr_decay_factor={config.lr_decay_factor!r} must be in (0, 1]")
    if not 0.0 <= config.label_smoothing < 1.0:
        raise ConfigError(f"config.label_smoothing={config.label_smoothing!r} must be in [0, 1)")


def check_config(config: Any, *, num_devices: int, check_model_name: bool = True) -> Plan:
    """Validates `config`; returns the derived `Plan`. Raises ConfigError."""
    try:
        spec = dataset_spec(config.dataset, config.synthetic)
    except ValueError as e:
        raise ConfigError(f"config.dataset: {e}") from None
    if check_model_name:
        check_model(config)
    _check_optimizer(config)
    _choice("dtype", config.dtype, DTYPES)
    for field in ("batch_size", "eval_batch_size", "log_every", "checkpoint_every_steps",
                  "keep_checkpoints"):
        _positive(config, field)
    _non_negative("profile_steps", config.profile_steps)
    _non_negative("prefetch", config.prefetch)
    if config.num_steps is not None:
        _positive(config, "num_steps")
    else:
        _positive(config, "num_epochs")
    for field in ("batch_size", "eval_batch_size"):
        if config[field] % num_devices:
            raise ConfigError(
                f"config.{field}={config[field]} is not divisible by the {num_devices} "
                f"devices; choices: a multiple of {num_devices}"
            )
    max_shift = config.augment.max_shift
    if max_shift is not None and (not isinstance(max_shift, int) or max_shift < 0):
        raise ConfigError(f"config.augment.max_shift={max_shift!r} must be an integer >= 0")
    num_classes = spec.num_classes if config.num_classes is None else config.num_classes
    if num_classes < spec.num_classes:
        raise ConfigError(
            f"config.num_classes={num_classes} is below the {spec.num_classes} classes of "
            f"{config.dataset!r}; choices: None (from the dataset) or >= {spec.num_classes}"
        )
    return Plan(num_classes=num_classes, image_shape=spec.image_shape,
                num_devices=num_devices, spec=spec)
