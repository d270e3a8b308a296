"""Fixtures for the training tests: a shared digits data dir and a tiny CNN."""

import functools
import importlib.util
import pathlib

import jax
import pytest
from flax import nnx

import poolnets.nnx as pnnx

ROOT = pathlib.Path(__file__).resolve().parents[2]


def load_config(name: str = "default"):
    """`get_config()` of configs/<name>.py (configs/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"config_{name}", ROOT / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


class TinyCNN(nnx.Module):
    """Conv-BN-ReLU-pool-dropout-dense (NNX): exercises BatchNorm statistics, dropout and,
    with pool="stochastic", a random pool drawing from the "pool" stream."""

    def __init__(self, num_classes: int = 10, use_batchnorm: bool = True, in_channels: int = 1,
                 image_size: int = 32, pool: str = "max", *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(in_channels, 8, (5, 5), strides=(2, 2), rngs=rngs)
        self.bn = nnx.BatchNorm(8, momentum=0.9, rngs=rngs) if use_batchnorm else None
        self.pool = (pnnx.StochasticPool(2, rngs=rngs) if pool == "stochastic"
                     else pnnx.MaxPool(2))
        self.drop = nnx.Dropout(0.1, rngs=rngs)
        side = image_size // 4
        self.dense = nnx.Linear(side * side * 8, num_classes, rngs=rngs)

    def __call__(self, x, *, train=None):
        flag = None if train is None else not train
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x, use_running_average=flag)
        x = jax.nn.relu(x)
        x = self.pool(x, deterministic=flag) if isinstance(self.pool, pnnx.StochasticPool) \
            else self.pool(x)
        x = self.drop(x, deterministic=flag)
        return self.dense(x.reshape(x.shape[0], -1))


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
    """One digits data dir shared by all xdist workers of this session (exercises the lock)."""
    return str(tmp_path_factory.getbasetemp().parent / "digits_data")


@pytest.fixture
def tiny_config(digits_dir):
    """The default config shrunk to a few steps of a fast run."""
    config = load_config()
    config.data_dir = digits_dir
    config.batch_size = 32
    config.num_steps = 12
    config.log_every = 4
    # 0.1 without warmup sends this CNN to a uniform output within 12 steps for most seeds
    # (measured: 5 of 6 inits, Linen and NNX alike); 0.03 learns for each seed tried.
    config.learning_rate = 0.03
    config.warmup_epochs = 0.0
    config.curves = False  # drawing costs ~0.3 s a run; test_loop's first run draws them
    return config


@pytest.fixture
def tiny_model():
    """A build (rngs -> module) of the tiny CNN, initialised from the run's seed."""
    return functools.partial(TinyCNN, use_batchnorm=True)


@pytest.fixture
def make_tiny_model():
    return lambda **kw: functools.partial(TinyCNN, **{"num_classes": 10, **kw})

