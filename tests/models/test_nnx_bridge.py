"""The documented NNX example (examples/nnx_bridge.py): a linen model trained from NNX."""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

EXAMPLE = pathlib.Path(__file__).parents[2] / "examples" / "nnx_bridge.py"


def load_example():
    spec = importlib.util.spec_from_file_location("nnx_bridge_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_nnx_training_updates_params_and_batch_stats_and_matches_linen():
    example = load_example()
    # RBG keys: threefry-based initialisers compile slowly on CPU.
    rngs = nnx.Rngs(**{s: jax.random.key(i, impl="rbg")
                       for i, s in enumerate(("params", "dropout", "pool"))})
    model = example.build("resnet20", depth=8, width=0.25, input_shape=(4, 32, 32, 3),
                          rngs=rngs)
    params0 = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    stats0 = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
    optimizer = nnx.Optimizer(model, optax.sgd(0.05), wrt=nnx.Param)
    x, y = example.synthetic_batch(jax.random.key(0), n=8)
    losses = [float(example.train_step(model, optimizer, x, y)) for _ in range(2)]
    assert all(np.isfinite(losses))

    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    stats = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
    changed = lambda a, b: any(  # noqa: E731
        not np.allclose(u, v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))
    assert changed(params0, params) and changed(stats0, stats)

    # The NNX module in evaluation mode is the linen model applied to the same variables.
    linen = model.to_nnx__module
    expected = linen.apply({"params": params, "batch_stats": stats}, x, train=False)
    np.testing.assert_allclose(model(x, train=False), expected, rtol=1e-5, atol=1e-5)
    assert expected.shape == (8, 10) and expected.dtype == jnp.float32
