"""Run set-up from a config: multi-host initialisation, data, preprocessing."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax

from poolnets.data import Preprocess, load_split
from poolnets.training.config import ConfigError, Plan, check_numbers


def initialize_distributed(config: Any) -> bool:
    """Joins a multi-process run before JAX is used; returns whether one was joined.

    From config.distributed (coordinator_address, num_processes, process_id) when
    coordinator_address is set, else from $JAX_COORDINATOR_ADDRESS, $JAX_NUM_PROCESSES,
    $JAX_PROCESS_ID when the first is set; otherwise a single process. CPU processes talk
    through gloo collectives. The config's numbers are checked first (ConfigError), as
    this runs before `check_config`.
    """
    check_numbers(config)
    d = config.distributed
    address = d.coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if not address:
        return False
    num = d.num_processes if d.coordinator_address else os.environ.get("JAX_NUM_PROCESSES")
    pid = d.process_id if d.coordinator_address else os.environ.get("JAX_PROCESS_ID")
    if num is None or pid is None:
        raise ConfigError(
            f"config.distributed.coordinator_address={address!r} needs num_processes and "
            "process_id (config.distributed.* or $JAX_NUM_PROCESSES / $JAX_PROCESS_ID)")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(address, num_processes=int(num), process_id=int(pid))
    return True


def load_data(config: Any, plan: Plan, data_dir: str) -> tuple[Any, Any]:
    """(train, test) splits of config.dataset; a dataset that is not there is a ConfigError."""
    from poolnets.data.sources import DatasetUnavailable

    try:
        if config.dataset == "synthetic":
            return plan.spec.read(data_dir, "train"), plan.spec.read(data_dir, "test")
        return (load_split(config.dataset, "train", data_dir),
                load_split(config.dataset, "test", data_dir))
    except DatasetUnavailable as e:
        raise ConfigError(f"config.dataset={config.dataset!r}: {e}") from None


def build_preprocess(config: Any, plan: Plan) -> Preprocess:
    """The dataset's standard preprocessing with config.augment applied."""
    spec = plan.spec.preprocess
    if not config.augment.enabled:
        return dataclasses.replace(spec, max_shift=0, flip=False)
    if config.augment.max_shift is not None:
        spec = dataclasses.replace(spec, max_shift=config.augment.max_shift)
    if config.augment.flip is not None:
        spec = dataclasses.replace(spec, flip=config.augment.flip)
    return spec


def apply_transfer(config: Any, model: Any, tx: Any) -> tuple[Any, Any]:
    """(build, tx) for fine-tuning (`poolnets.models.transfer`) of `model` (an NNX build
    or module): freeze_backbone gives tx zero updates outside the classifier head;
    freeze_batch_stats (with init_from) makes every BatchNorm normalise with its stored
    statistics and keep them."""
    from poolnets.models import transfer
    from poolnets.training.state import as_build

    if config.freeze_backbone:
        try:
            tx = transfer.freeze_backbone(tx, transfer.head_of(config.model.name))
        except ValueError as e:
            raise ConfigError(f"config.freeze_backbone=True: {e}") from None
    build = as_build(model)
    if config.freeze_batch_stats and config.init_from:
        return (lambda rngs: transfer.freeze_batch_stats(build(rngs=rngs))), tx
    return build, tx


def init_from(config: Any, state: Any) -> Any:
    """`state` with its backbone replaced by config.init_from's (head kept fresh)."""
    if not config.init_from:
        return state
    from poolnets.models import transfer

    try:
        return transfer.init_from_checkpoint(state, config.model.name, config.init_from)
    except (ValueError, OSError, KeyError) as e:
        message = " ".join(str(e).split())[:300]
        raise ConfigError(f"config.init_from={config.init_from!r}: {message}") from None
