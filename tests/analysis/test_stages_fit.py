"""PoolStack keeps its parameter count for every number of pooled stages; the multi-seed
trainer gives each seed its own initialisation and agrees with single-seed training."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from poolnets.analysis import cost
from poolnets.analysis.fit import fit_seeds, unstack
from poolnets.analysis.stages import PoolStack
from poolnets.data import Split


def test_pool_stack_params_constant():
    x = jax.ShapeDtypeStruct((1, 16, 16, 1), jnp.float32)
    counts = set()
    for k in range(4):
        model = nnx.eval_shape(
            lambda k=k: PoolStack(channels=(4, 4, 8), pooled_stages=k, rngs=nnx.Rngs(0)))
        counts.add(cost.total_params(nnx.state(model, nnx.Param)))
        sizes = cost.activation_sizes(model, x)
        assert sizes["conv2"] == (16 // 2 ** min(k, 2)) ** 2 * 8
    assert len(counts) == 1
    with pytest.raises(ValueError, match="pooled_stages"):
        PoolStack(channels=(4,), pooled_stages=2, rngs=nnx.Rngs(0))


def _config(**fields):
    """A training config as train.py's, with `fields` changed."""
    from poolnets.training.defaults import base_config

    config = base_config()
    config.augment.max_shift = 0
    config.update(fields)
    return config


def test_fit_seeds_vmapped_and_looped_equal_single():
    """Seeds are independent: seed 5 trained beside seed 0 (vmapped or looped) ends where seed
    5 trained alone does; seeds 0 and 5 differ."""
    rng = np.random.default_rng(0)
    data = Split(rng.random((40, 8, 8, 1), dtype=np.float32), rng.integers(0, 3, 40, np.int32))
    # a stochastic pool: each seed draws its samples from its own "pool" stream
    model = functools.partial(PoolStack, num_classes=3, channels=(4,), pooled_stages=1,
                              downsample="stochastic")
    config = _config(num_steps=3, batch_size=8)
    _, both_vmap, timing = fit_seeds(model, data, [0, 5], config, num_classes=3,
                                     seed_parallel="vmap")
    _, both_loop, _ = fit_seeds(model, data, [0, 5], config, num_classes=3)
    _, alone, _ = fit_seeds(model, data, [5], config, num_classes=3)
    assert timing["steps"] == 3
    for both in (both_vmap, both_loop):
        for a, b in zip(jax.tree.leaves(unstack(both, 1).params),
                        jax.tree.leaves(unstack(alone, 0).params), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        assert not np.allclose(unstack(both, 0).params["conv0"]["kernel"],
                               unstack(both, 1).params["conv0"]["kernel"])
    _, first, _ = fit_seeds(model, data, [5], _config(num_steps=1, batch_size=8),
                            num_classes=3)
    assert not np.allclose(unstack(alone, 0).params["conv0"]["kernel"],
                           unstack(first, 0).params["conv0"]["kernel"])  # steps 2, 3 moved it
    with pytest.raises(ValueError, match="seeds"):
        fit_seeds(model, data, [], config, num_classes=3)
    with pytest.raises(ValueError, match="seed_parallel"):
        fit_seeds(model, data, [0], config, num_classes=3, seed_parallel="pmap")


def test_fit_seeds_steps_by_train_py_recipe():
    """The step counts are poolnets.training's, from the training config: epochs of full
    batches, and the same ConfigError as train.py for a batch larger than the data."""
    from poolnets.training.config import ConfigError
    from poolnets.training.optim import count_steps, make_recipe

    config = _config(num_epochs=2, batch_size=8)
    assert count_steps(config, 20) == (2, 4)  # 20 // 8 full batches an epoch, 2 epochs
    recipe = make_recipe(config, 20)
    assert recipe.num_epochs == 2  # the warmup (1 epoch = 2 steps) peaks at step 2
    assert float(recipe.schedule(2)) == pytest.approx(config.learning_rate)
    rng = np.random.default_rng(0)
    data = Split(rng.random((20, 4, 4, 1), dtype=np.float32), rng.integers(0, 2, 20, np.int32))
    model = functools.partial(PoolStack, num_classes=2, channels=(2,), pooled_stages=0)
    with pytest.raises(ConfigError, match=r"config.batch_size=32 exceeds the 20 training images"):
        fit_seeds(model, data, [0], _config(batch_size=32, dataset="synthetic"), num_classes=2)
