"""Schedules and optimizers against their formulas."""

import math

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from poolnets.training.optim import decay_mask, make_optimizer, make_schedule, schedule_table


def test_cosine_schedule_formula():
    lr, total, warmup = 0.4, 50, 10
    schedule = make_schedule("cosine", lr, total, warmup)
    for t in range(total + 1):
        if t < warmup:
            expected = lr * t / warmup
        else:
            expected = lr * 0.5 * (1 + math.cos(math.pi * (t - warmup) / (total - warmup)))
        assert float(schedule(t)) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("name", ["cosine", "step"])
def test_schedule_table_holds_every_steps_rate(name):
    schedule = make_schedule(name, 0.3, 40, 6, decay_steps=(20, 30))
    table = schedule_table(schedule, 40)
    assert table.shape == (40,) and table.dtype == np.float32
    # float32 rounding of the cosine may differ between the vectorised and the scalar call
    np.testing.assert_allclose(table, [float(schedule(t)) for t in range(40)], rtol=0,
                               atol=1e-7)


def test_constant_schedule_with_and_without_warmup():
    assert [float(make_schedule("constant", 0.1, 20, 0)(t)) for t in (0, 19)] == [
        pytest.approx(0.1)] * 2
    warm = make_schedule("constant", 0.1, 20, 4)
    np.testing.assert_allclose([float(warm(t)) for t in (0, 2, 4, 19)], [0, 0.05, 0.1, 0.1],
                               atol=1e-7)


def test_unknown_names_list_choices():
    with pytest.raises(ValueError, match=r"'linear'; choices: cosine, constant, step"):
        make_schedule("linear", 0.1, 10, 0)
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


def test_step_schedule_formula_with_warmup():
    lr, factor, decays = 0.1, 0.1, (30, 45)
    for warmup in (0, 5):
        schedule = make_schedule("step", lr, 60, warmup, decay_steps=decays,
                                 decay_factor=factor)
        for t in range(61):
            expected = lr * t / warmup if t < warmup else lr * factor ** sum(t >= d for d in decays)
            assert float(schedule(t)) == pytest.approx(expected, rel=1e-6, abs=1e-9), (warmup, t)


def _sgd_reference(grads, lr, mu, nesterov, steps):
    """PyTorch's SGD: b = mu * b + g; step = g + mu * b (nesterov) or b; w -= lr * step."""
    w, b = 0.0, 0.0
    for g in grads[:steps]:
        b = mu * b + g
        w -= lr * (g + mu * b if nesterov else b)
    return w


@pytest.mark.parametrize("nesterov", [True, False])
def test_sgd_momentum_matches_pytorch_formula(nesterov):
    grads = [0.5, -1.0, 2.0, 0.25]
    tx = make_optimizer("sgd", optax.constant_schedule(0.1), momentum=0.9, nesterov=nesterov)
    params = {"w": jnp.zeros(())}
    state = tx.init(params)
    for g in grads:
        updates, state = tx.update({"w": jnp.asarray(g)}, state, params)
        params = optax.apply_updates(params, updates)
    assert float(params["w"]) == pytest.approx(_sgd_reference(grads, 0.1, 0.9, nesterov, 4),
                                               rel=1e-6)


def test_adamw_first_step_and_decoupled_decay():
    # Adam's first step is -lr * g / (|g| + eps) = -lr * sign(g); decay adds -lr * wd * w.
    params = {"kernel": jnp.full((2, 2), 2.0), "bias": jnp.full((2,), 2.0)}
    grads = {"kernel": jnp.array([[1.0, -3.0], [0.5, -0.1]]), "bias": jnp.array([4.0, -4.0])}
    tx = make_optimizer("adamw", optax.constant_schedule(0.01), weight_decay=0.5)
    updates, _ = tx.update(grads, tx.init(params), params)
    expected = -0.01 * np.sign(grads["kernel"]) - 0.01 * 0.5 * 2.0
    np.testing.assert_allclose(updates["kernel"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(updates["bias"], -0.01 * np.sign(grads["bias"]), rtol=1e-5)


def test_gradient_clipping_rescales_to_the_global_norm():
    grads = {"a": jnp.array([3.0, 0.0]), "b": jnp.array([[4.0]])}  # global norm 5
    tx = make_optimizer("sgd", optax.constant_schedule(1.0), momentum=0.0, grad_clip_norm=1.0)
    params = jax.tree.map(jnp.zeros_like, grads)
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(updates["a"], [-0.6, 0.0], rtol=1e-6)
    np.testing.assert_allclose(updates["b"], [[-0.8]], rtol=1e-6)
    loose = make_optimizer("sgd", optax.constant_schedule(1.0), momentum=0.0, grad_clip_norm=10.0)
    updates, _ = loose.update(grads, loose.init(params), params)
    np.testing.assert_allclose(updates["a"], [-3.0, 0.0])


def test_decay_mask_of_a_batchnorm_model_keeps_only_kernels(tiny_model):
    params = nnx.state(nnx.eval_shape(lambda: tiny_model(rngs=nnx.Rngs(0))), nnx.Param)
    mask = flax.traverse_util.flatten_dict(decay_mask(nnx.to_pure_dict(params)), sep="/")
    assert mask == {"conv/kernel": True, "conv/bias": False, "bn/scale": False,
                    "bn/bias": False, "dense/kernel": True, "dense/bias": False}
