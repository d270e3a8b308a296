"""Training: TrainState, data-parallel jit steps, the loop and its workdir artifacts.

Names load on first use (PEP 562), so `poolnets.training.defaults` (used by configs/*.py)
imports without JAX, and nothing here imports tensorflow_datasets until data is read.
"""

import importlib

_EXPORTS = {
    "TIMING_KEYS": "loop",
    "TrainingDiverged": "loop",
    "create_model": "loop",
    "train_and_evaluate": "loop",
    "ConfigError": "config",
    "check_config": "config",
    "base_config": "defaults",
    "CheckpointError": "artifacts",
    "WriteError": "artifacts",
    "TrainState": "state",
    "count_params": "state",
    "create_train_state": "state",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'poolnets.training' has no attribute {name!r}")
    return getattr(importlib.import_module(f"poolnets.training.{_EXPORTS[name]}"), name)
