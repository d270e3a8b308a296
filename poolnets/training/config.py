"""Checks a training config before anything is computed or written.

Every problem is a `ConfigError` (a ValueError) whose one-line message names the config
field, the bad value and the valid choices; `train.py` prints it and exits with status 2.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from poolnets.data import get_spec
from poolnets.training.optim import OPTIMIZERS, SCHEDULES

DTYPES = ("float32", "bfloat16", "float16")


class ConfigError(ValueError):
    """A config value that cannot work, found before training starts."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """Values derived from a valid config and the dataset."""

    num_classes: int
    image_shape: tuple[int, int, int]
    num_devices: int


def _choice(field: str, value: Any, choices: list[str] | tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"config.{field}={value!r} is not valid; choices: {', '.join(choices)}")


def _positive(config: Any, field: str) -> None:
    value = config[field]
    if not isinstance(value, int) or value <= 0:
        raise ConfigError(f"config.{field}={value!r} must be a positive integer")


def model_choices() -> list[str]:
    """Names `poolnets.models.create` accepts ([] while no model is registered)."""
    from poolnets import models

    list_models = getattr(models, "list_models", None)
    return list(list_models()) if list_models else []


def check_model(config: Any) -> None:
    """Model name and the downsample/head overrides against the registries."""
    _choice("model", config.model, model_choices())
    from poolnets import nn as pnn

    for field, registry in (("downsample", "downsample_names"), ("head", "head_names")):
        names = getattr(pnn, registry, None)
        if config[field] is not None and names is not None:
            _choice(field, config[field], names())


def check_config(config: Any, *, num_devices: int, check_model_name: bool = True) -> Plan:
    """Validates `config`; returns the derived `Plan`. Raises ConfigError."""
    try:
        spec = get_spec(config.dataset)
    except ValueError as e:
        raise ConfigError(f"config.dataset: {e}") from None
    if check_model_name:
        check_model(config)
    _choice("optimizer", config.optimizer, OPTIMIZERS)
    _choice("schedule", config.schedule, SCHEDULES)
    _choice("dtype", config.dtype, DTYPES)
    for field in ("batch_size", "eval_batch_size", "log_every"):
        _positive(config, field)
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
    if not 0.0 <= config.label_smoothing < 1.0:
        raise ConfigError(f"config.label_smoothing={config.label_smoothing!r} must be in [0, 1)")
    max_shift = config.augment.max_shift
    if not isinstance(max_shift, int) or max_shift < 0:
        raise ConfigError(f"config.augment.max_shift={max_shift!r} must be an integer >= 0")
    num_classes = spec.num_classes if config.num_classes is None else config.num_classes
    if num_classes < spec.num_classes:
        raise ConfigError(
            f"config.num_classes={num_classes} is below the {spec.num_classes} classes of "
            f"{config.dataset!r}; choices: None (from the dataset) or >= {spec.num_classes}"
        )
    return Plan(num_classes=num_classes, image_shape=spec.image_shape, num_devices=num_devices)
