"""Fixtures for the training tests: a shared digits data dir and a tiny CNN."""

import importlib.util
import pathlib

import flax.linen as nn
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def load_config(name: str = "default"):
    """`get_config()` of configs/<name>.py (configs/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"config_{name}", ROOT / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


class TinyCNN(nn.Module):
    """Conv-BN-ReLU-pool-dropout-dense: exercises batch_stats, dropout and a "pool" RNG."""

    num_classes: int = 10
    use_batchnorm: bool = True

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = nn.Conv(8, (5, 5), strides=(2, 2))(x)
        if self.use_batchnorm:
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = nn.relu(x)
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = nn.Dropout(0.1, deterministic=not train)(x)
        return nn.Dense(self.num_classes)(x.reshape(x.shape[0], -1))


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
    config.learning_rate = 0.1
    config.warmup_epochs = 0.0
    config.curves = False  # drawing costs ~0.3 s a run; test_loop's first run draws them
    return config


@pytest.fixture
def tiny_model():
    return TinyCNN(use_batchnorm=True)


@pytest.fixture
def make_tiny_model():
    return lambda **kw: TinyCNN(**{"num_classes": 10, **kw})

