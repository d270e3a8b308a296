"""Training: TrainState, data-parallel jit steps, the loop and its workdir artifacts.

`import poolnets.training` does not import tensorflow_datasets (datasets load lazily).
"""

from poolnets.training.config import ConfigError, check_config
from poolnets.training.loop import TIMING_KEYS, create_model, train_and_evaluate
from poolnets.training.state import TrainState, count_params, create_train_state

__all__ = [
    "TIMING_KEYS",
    "ConfigError",
    "TrainState",
    "check_config",
    "count_params",
    "create_model",
    "create_train_state",
    "train_and_evaluate",
]
