"""Schedules and optimizers against their formulas."""

import math

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from poolnets.training.optim import decay_mask, make_optimizer, make_schedule


def test_cosine_schedule_formula():
    lr, total, warmup = 0.4, 50, 10
    schedule = make_schedule("cosine", lr, total, warmup)
    for t in range(total + 1):
        if t < warmup:
            expected = lr * t / warmup
        else:
            expected = lr * 0.5 * (1 + math.cos(math.pi * (t - warmup) / (total - warmup)))
        assert float(schedule(t)) == pytest.approx(expected, abs=1e-6)


def test_constant_schedule_with_and_without_warmup():
    assert [float(make_schedule("constant", 0.1, 20, 0)(t)) for t in (0, 19)] == [
        pytest.approx(0.1)] * 2
    warm = make_schedule("constant", 0.1, 20, 4)
    np.testing.assert_allclose([float(warm(t)) for t in (0, 2, 4, 19)], [0, 0.05, 0.1, 0.1],
                               atol=1e-7)


def test_unknown_names_list_choices():
    with pytest.raises(ValueError, match=r"'step'; choices: cosine, constant"):
        make_schedule("step", 0.1, 10, 0)
    with pytest.raises(ValueError, match=r"'lamb'; choices: sgd, adamw"):
        make_optimizer("lamb", optax.constant_schedule(0.1))


def test_weight_decay_only_on_kernels():
    params = {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)}
    assert decay_mask(params) == {"kernel": True, "bias": False}
    zero_grads = {"kernel": jnp.zeros((2, 3)), "bias": jnp.zeros(3)}
    for name in ("sgd", "adamw"):
        tx = make_optimizer(name, optax.constant_schedule(0.5), momentum=0.0, weight_decay=0.1)
        updates, _ = tx.update(zero_grads, tx.init(params), params)
        # sgd: -lr * wd * w = -0.05; adamw: -lr * wd * w = -0.05 (decoupled, Adam part 0)
        np.testing.assert_allclose(updates["kernel"], -0.05, rtol=1e-6)
        np.testing.assert_allclose(updates["bias"], 0.0)
