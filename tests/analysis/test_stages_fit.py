"""PoolStack keeps its parameter count for every number of pooled stages; the multi-seed
trainer gives each seed its own initialisation and agrees with single-seed training."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from poolnets.analysis import cost
from poolnets.analysis.fit import FitConfig, fit_seeds, unstack
from poolnets.analysis.stages import PoolStack
from poolnets.data import Split


def test_pool_stack_params_constant():
    x = jnp.zeros((1, 16, 16, 1))
    counts = set()
    for k in range(4):
        model = PoolStack(channels=(4, 4, 8), pooled_stages=k)
        variables = jax.eval_shape(lambda m=model: m.init(jax.random.key(0), x))
        counts.add(cost.total_params(variables["params"]))
        sizes = cost.activation_sizes(model, variables, x)
        assert sizes["conv2"] == (16 // 2 ** min(k, 2)) ** 2 * 8
    assert len(counts) == 1
    with pytest.raises(ValueError, match="pooled_stages"):
        PoolStack(channels=(4,), pooled_stages=2).init(jax.random.key(0), x)


def test_fit_seeds_vmapped_and_looped_equal_single():
    """Seeds are independent: seed 5 trained beside seed 0 (vmapped or looped) ends where seed
    5 trained alone does; seeds 0 and 5 differ."""
    rng = np.random.default_rng(0)
    data = Split(rng.random((40, 8, 8, 1), dtype=np.float32), rng.integers(0, 3, 40, np.int32))
    model = PoolStack(num_classes=3, channels=(4,), pooled_stages=1)
    loop = FitConfig(num_steps=3, batch_size=8, seed_parallel="loop")
    vmap = FitConfig(num_steps=3, batch_size=8, seed_parallel="vmap")
    both_vmap, timing = fit_seeds(model, data, [0, 5], vmap, num_classes=3)
    both_loop, _ = fit_seeds(model, data, [0, 5], loop, num_classes=3)
    alone, _ = fit_seeds(model, data, [5], loop, num_classes=3)
    assert timing["steps"] == 3
    for both in (both_vmap, both_loop):
        for a, b in zip(jax.tree.leaves(unstack(both, 1).params),
                        jax.tree.leaves(unstack(alone, 0).params), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        assert not np.allclose(unstack(both, 0).params["conv0"]["kernel"],
                               unstack(both, 1).params["conv0"]["kernel"])
    first, _ = fit_seeds(model, data, [5], dataclasses.replace(loop, num_steps=1), num_classes=3)
    assert not np.allclose(unstack(alone, 0).params["conv0"]["kernel"],
                           unstack(first, 0).params["conv0"]["kernel"])  # steps 2, 3 moved it
    with pytest.raises(ValueError, match="seeds"):
        fit_seeds(model, data, [], loop, num_classes=3)
    with pytest.raises(ValueError, match="seed_parallel"):
        FitConfig(seed_parallel="pmap")
