"""Every numeric config field is finite and in its range, checked before anything runs."""

import math

import ml_collections
import pytest
from conftest import ROOT, load_config

from poolnets.training.config import NUMBERS, ConfigError, check_config
from poolnets.training.defaults import base_config


def _numeric_leaves(config, prefix=""):
    """Dotted names of the leaves holding a number or a tuple of numbers."""
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            yield from _numeric_leaves(value, f"{prefix}{key}.")
        elif isinstance(value, (int, float, tuple)) and not isinstance(value, bool):
            yield prefix + key


def test_every_numeric_field_of_every_config_has_a_range():
    names = sorted(p.stem for p in (ROOT / "configs").glob("*.py"))
    fields = set(_numeric_leaves(base_config()))
    for name in names:
        fields |= set(_numeric_leaves(load_config(name)))
    assert fields <= set(NUMBERS), sorted(fields - set(NUMBERS))
    # a None default (placeholder) hides the type: those fields must be listed all the same
    placeholders = {"num_classes", "num_steps", "lr_decay_epochs", "grad_clip_norm",
                    "augment.max_shift", "distributed.num_processes", "distributed.process_id"}
    assert placeholders <= set(NUMBERS)


def _bad_values(field):
    valid = NUMBERS[field]
    values = [math.nan, math.inf, -math.inf]
    kind, step = (int, 1) if valid.integer else (float, 1e-3)
    values.append(kind(valid.low if valid.low_open else valid.low - step))
    if valid.high != math.inf:
        values.append(kind(valid.high if valid.high_open else valid.high + step))
    if valid.integer:
        values.append(valid.low + 0.5)  # a float where an integer is needed
    return [(v,) * 3 if valid.sequence else v for v in values]


CASES = [(field, value) for field in NUMBERS for value in _bad_values(field)]


@pytest.mark.parametrize(("field", "value"), CASES, ids=[f"{f}={v!r}" for f, v in CASES])
def test_non_finite_or_out_of_range_number_is_a_config_error(field, value):
    # type_safe=False: the CLI's parser already rejects a float for an int field; a config
    # built in Python need not go through it
    config = ml_collections.ConfigDict(load_config().to_dict(), type_safe=False)
    node, leaf = config, field
    while "." in leaf:
        head, leaf = leaf.split(".", 1)
        node = node[head]
    node[leaf] = value
    with pytest.raises(ConfigError) as error:
        check_config(config, num_devices=1)
    message = str(error.value)
    assert message.startswith(f"config.{field}={value!r} must be "), message
    assert "\n" not in message


@pytest.mark.parametrize(("field", "value"), [
    ("momentum", 0.0), ("label_smoothing", 0.0), ("lr_decay_factor", 1.0),
    ("warmup_epochs", 0.0), ("weight_decay", 0.0), ("seed", -1), ("seed", 2**63 - 1),
    ("learning_rate", 1), ("profile_steps", 0), ("prefetch", 0),
])
def test_range_boundaries_that_are_valid(field, value):
    config = load_config()
    config[field] = value
    check_config(config, num_devices=1)
