"""Checks a training config (fields: `poolnets.training.defaults.base_config`) before
anything is computed or written.

Every problem found by `check_config` is a `ConfigError` (a ValueError) whose one-line
message names the field, the bad value and the valid choices; `train.py` prints it and exits
with status 2. Every numeric field must be finite and in the range `NUMBERS` gives it (NaN
passes any `value <= 0` test, so ranges are checked as what is accepted, never as what is
refused).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from poolnets.data import DatasetSpec, dataset_spec
from poolnets.training.defaults import base_config
from poolnets.training.errors import ConfigError
from poolnets.training.optim import OPTIMIZERS, SCHEDULES

DTYPES = ("float32", "bfloat16", "float16")
# config.model fields passed to `poolnets.models.create` when set (not None); the compute
# dtype is config.dtype, num_classes config.num_classes or the dataset's.
MODEL_OPTIONS = ("downsample", "head", "width", "spatial_dims", "downsample_blocks",
                 "batch_norm")


__all__ = ["MODEL_OPTIONS", "NUMBERS", "ConfigError", "Plan", "Range", "base_config",
           "check_choice", "check_config", "check_numbers", "model_options"]


@dataclasses.dataclass(frozen=True)
class Plan:
    """Values derived from a valid config and the dataset."""

    num_classes: int
    image_shape: tuple[int, int, int]
    num_devices: int
    spec: DatasetSpec


def check_choice(field: str, value: Any, choices: list[str] | tuple[str, ...]) -> None:
    """ConfigError naming config.`field`, `value` and the choices unless value is one."""
    if value not in choices:
        raise ConfigError(f"config.{field}={value!r} is not valid; choices: {', '.join(choices)}")


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a numeric config field accepts: finite, between `low` and `high`."""

    low: float
    high: float = math.inf
    low_open: bool = False
    high_open: bool = True
    integer: bool = False
    optional: bool = False  # None is accepted too
    sequence: bool = False  # a tuple of such numbers (None when optional)
    text: str = ""  # the description in errors, when the generated one would be unreadable

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int if self.integer else (int, float)):
            return False  # bool is an int to Python, never a number to a config
        # NaN fails every comparison, so `value <= 0` alone let it through; check finiteness
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        finite = isinstance(value, int) or math.isfinite(value)  # ints may exceed floats
        return finite and above and below

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        if self.text:
            text = self.text
        elif self.high == math.inf:
            text = f"{kind} {'>' if self.low_open else '>='} {self.low:g}"
        else:
            text = (f"{kind} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                    f"{')' if self.high_open else ']'}")
        if self.sequence:
            text = "a tuple of " + text.replace("an integer", "integers").replace(
                "a finite number", "finite numbers")
        return f"None or {text}" if self.optional else text


_COUNT = Range(1, integer=True)  # a positive integer
_POSITIVE = Range(0, low_open=True)
_NON_NEGATIVE = Range(0)
_FRACTION = Range(0, 1)  # [0, 1)

# Every numeric field of `base_config()` and the range it accepts; tests/training checks that
# no numeric field of any configs/*.py is missing here.
NUMBERS: dict[str, Range] = {
    "synthetic.image_shape": Range(1, integer=True, sequence=True),
    "synthetic.num_classes": _COUNT,
    "synthetic.num_train": _COUNT,
    "synthetic.num_test": _COUNT,
    "model.width": Range(0, low_open=True, optional=True),
    "model.spatial_dims": Range(1, 3, integer=True, optional=True, high_open=False),
    "num_classes": Range(1, integer=True, optional=True),
    "batch_size": _COUNT,
    "eval_batch_size": _COUNT,
    "num_epochs": _COUNT,
    "num_steps": Range(1, integer=True, optional=True),
    "learning_rate": _POSITIVE,
    "momentum": _FRACTION,  # 1 would never forget a gradient; above 1 diverges
    "weight_decay": _NON_NEGATIVE,
    "warmup_epochs": _NON_NEGATIVE,
    "lr_decay_epochs": Range(0, low_open=True, optional=True, sequence=True),
    "lr_decay_factor": Range(0, 1, low_open=True, high_open=False),
    "label_smoothing": _FRACTION,
    "grad_clip_norm": Range(0, low_open=True, optional=True),
    "augment.max_shift": Range(0, integer=True, optional=True),
    "checkpoint_every_steps": _COUNT,
    "keep_checkpoints": _COUNT,
    # what jax.random.key accepts (a C long)
    "seed": Range(-(2**63), 2**63, integer=True, text="an integer in [-2**63, 2**63)"),
    "log_every": _COUNT,
    "profile_steps": Range(0, integer=True),
    "prefetch": Range(0, integer=True, optional=True),
    "data.workers": Range(0, integer=True),
    "distributed.num_processes": Range(1, integer=True, optional=True),
    "distributed.process_id": Range(0, integer=True, optional=True),
}


def _field(config: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        config = config[part]
    return config


def check_numbers(config: Any, table: dict[str, Range] | None = None) -> None:
    """Every field of `table` (default `NUMBERS`) finite and in its range; raises ConfigError
    naming the first that is not."""
    for field, valid in (NUMBERS if table is None else table).items():
        value = _field(config, field)
        if value is None and valid.optional:
            continue
        if valid.sequence:
            ok = isinstance(value, (tuple, list)) and all(valid.accepts(v) for v in value)
        else:
            ok = valid.accepts(value)
        if not ok:
            raise ConfigError(f"config.{field}={value!r} must be {valid.describe()}")


def model_choices() -> list[str]:
    """Names `poolnets.models.create` accepts."""
    from poolnets import models

    return models.list_models()


def model_options(config: Any) -> dict[str, Any]:
    """The `poolnets.models.create` keyword arguments that config.model sets (None: unset,
    the model's published value)."""
    return {k: config.model.get(k) for k in MODEL_OPTIONS if config.model.get(k) is not None}


def check_model(config: Any) -> None:
    """Model name, the downsample/head overrides against the registries, and every other
    config.model option against the options of the named model (no model is built)."""
    check_choice("model.name", config.model.name, model_choices())
    from poolnets import models

    for field, names in (("downsample", models.downsample_names),
                         ("head", models.head_names)):
        if config.model[field] is not None:
            check_choice(f"model.{field}", config.model[field], names())
    for field, value in model_options(config).items():
        if field in ("downsample", "head") or field in models.overrides_of(config.model.name):
            continue
        takers = [name for name in model_choices() if field in models.overrides_of(name)]
        raise ConfigError(
            f"config.model.{field}={value!r} does not apply to {config.model.name!r}; "
            f"choices: None, or a model that has it: {', '.join(takers)}")


def _check_optimizer(config: Any) -> None:
    check_choice("optimizer", config.optimizer, OPTIMIZERS)
    check_choice("schedule", config.schedule, SCHEDULES)
    if config.schedule == "step" and not config.lr_decay_epochs:
        raise ConfigError(
            f"config.lr_decay_epochs={config.lr_decay_epochs!r} must be a non-empty tuple of "
            "epochs > 0 for config.schedule='step'"
        )


def check_config(config: Any, *, num_devices: int, check_model_name: bool = True) -> Plan:
    """Validates `config`; returns the derived `Plan`. Raises ConfigError."""
    check_numbers(config)
    try:
        spec = dataset_spec(config.dataset, config.synthetic)
    except ValueError as e:
        raise ConfigError(f"config.dataset: {e}") from None
    if check_model_name:
        check_model(config)
    _check_optimizer(config)
    check_choice("dtype", config.dtype, DTYPES)
    for field in ("batch_size", "eval_batch_size"):
        if config[field] % num_devices:
            raise ConfigError(
                f"config.{field}={config[field]} is not divisible by the {num_devices} "
                f"devices; choices: a multiple of {num_devices}"
            )
    dims = config.model.get("spatial_dims")
    if dims is not None and dims != len(spec.image_shape) - 1:
        raise ConfigError(
            f"config.model.spatial_dims={dims} does not fit the {spec.image_shape} (spatial "
            f"..., channels) inputs of {config.dataset!r}; choices: None or "
            f"{len(spec.image_shape) - 1}")
    num_classes = spec.num_classes if config.num_classes is None else config.num_classes
    if num_classes < spec.num_classes:
        raise ConfigError(
            f"config.num_classes={num_classes} is below the {spec.num_classes} classes of "
            f"{config.dataset!r}; choices: None (from the dataset) or >= {spec.num_classes}"
        )
    return Plan(num_classes=num_classes, image_shape=spec.image_shape,
                num_devices=num_devices, spec=spec)
