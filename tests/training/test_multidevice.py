"""Data parallelism: a few steps on 8 (forced host) devices equal 1 device at the same global
batch, BatchNorm statistics included (they are reduced over the global batch under jit), and
host batches given to the step equal batches placed beforehand, bit for bit.
The batches are stored uint8 CIFAR-style images, preprocessed and augmented in the step."""

import os
import pathlib
import subprocess
import sys
import textwrap

HERE = pathlib.Path(__file__).resolve().parent

SCRIPT = textwrap.dedent(
    """
    import sys
    import jax
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from conftest import TinyCNN
    from poolnets.data import get_spec
    from poolnets.training.optim import make_optimizer, make_schedule
    from poolnets.training.state import create_train_state
    from poolnets.training.steps import compile_steps, make_mesh, put_batch, put_replicated

    assert jax.device_count() == 8, jax.devices()
    import functools
    build = functools.partial(TinyCNN, use_batchnorm=True, in_channels=3)
    tx = make_optimizer("sgd", make_schedule("constant", 0.01, 4, 0), weight_decay=5e-4)
    rng = np.random.default_rng(0)
    # one batch seen four times: the loss must fall, and the steps still differ (shifts, dropout)
    images = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    batches = [(images, rng.integers(0, 10, 16).astype(np.int32))] * 4
    test = (rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8),
            rng.integers(0, 10, 8).astype(np.int32), np.arange(8) < 7)
    results = []
    # the third run passes host arrays, which the compiled step's dispatch shards itself
    for devices, placed in ((jax.devices()[:1], True), (jax.devices(), True),
                            (jax.devices(), False)):
        mesh = make_mesh(devices)
        model, state = create_train_state(build, tx, jax.random.key(0), (32, 32, 3))
        state = put_replicated(mesh, state)
        key = put_replicated(mesh, jax.random.key(1))
        train, evaluate = compile_steps(
            mesh, state, (16, 32, 32, 3), (8, 32, 32, 3), image_dtype=np.uint8, model=model,
            tx=tx, num_classes=10, label_smoothing=0.1,
            preprocess_spec=get_spec("cifar10").preprocess)
        losses = []
        for images, labels in batches:
            batch = put_batch(mesh, images, labels) if placed else (images, labels)
            state, metrics = train(state, *batch, key)
            losses.append(float(metrics["loss"]))
        assert len(state.params["conv"]["kernel"].sharding.device_set) == len(devices)
        sums = jax.device_get(evaluate(state, *put_batch(mesh, *test)))
        assert int(state.rngs["drop"]["rngs"]["count"]) == 4  # one dropout draw per step
        kept = (state.params, state.batch_stats, state.opt_state)
        results.append((jax.device_get(kept), losses, sums))
    (one, losses1, sums1), (eight, losses8, sums8), (host, losses_host, _) = results
    assert losses_host == losses8
    for a, b in zip(jax.tree.leaves(eight), jax.tree.leaves(host), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(losses1, losses8, rtol=1e-5)
    assert losses8[-1] < losses8[0], losses8
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(eight), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    for k in sums1:
        np.testing.assert_allclose(sums1[k], sums8[k], rtol=1e-5)
    assert sums8["count"] == 7
    print("ok")
    """
)


def test_eight_devices_match_one_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
           "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(HERE)], capture_output=True,
                            text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
