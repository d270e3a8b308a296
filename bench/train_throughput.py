"""Images/s of the full jitted train step (forward, backward, SGD update, augmentation) on
synthetic uint8 data, for a few models. A benchmark, not a test.

    python bench/train_throughput.py                     # lenet5, resnet20, resnet18, resnet50
    python bench/train_throughput.py --models resnet20 --steps 20

Per model: one warm-up step after compilation, then `--steps` timed steps (each waited on);
images/s = batch / median step time. The step runs over a mesh of all local devices, exactly
as train.py runs it (same compile_steps, the NNX model of `poolnets.models.nnx.create`), with
the synthetic dataset's preprocessing.
"""

from __future__ import annotations

import argparse
import functools
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from poolnets.data import Preprocess
from poolnets.models import nnx as zoo
from poolnets.training.optim import make_optimizer, make_schedule
from poolnets.training.state import create_train_state
from poolnets.training.steps import compile_steps, make_mesh, put_batch, put_replicated

# (model, image shape, batch, classes): CPU-sized batches; ResNet-50 at 224 with a small one.
CASES = {
    "lenet5": ((32, 32, 1), 256, 10),
    "resnet20": ((32, 32, 3), 128, 10),
    "resnet18": ((32, 32, 3), 128, 10),
    "resnet50": ((224, 224, 3), 8, 1000),
}


def measure(name: str, steps: int, batch: int | None = None) -> dict:
    shape, default_batch, classes = CASES[name]
    batch = batch or default_batch
    build = functools.partial(zoo.create, name, num_classes=classes)
    tx = make_optimizer("sgd", make_schedule("constant", 0.01, 10**6, 0), weight_decay=5e-4)
    mesh = make_mesh()
    model, state = create_train_state(build, tx, jax.random.key(0), shape)
    state = put_replicated(mesh, state)
    key = put_replicated(mesh, jax.random.key(1))
    t0 = time.perf_counter()
    train, _ = compile_steps(mesh, state, (batch, *shape), (batch, *shape),
                             image_dtype=jnp.uint8, model=model, tx=tx, num_classes=classes,
                             label_smoothing=0.0,
                             preprocess_spec=Preprocess(scale=1 / 255, max_shift=2, flip=True))
    compile_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, *shape), dtype=np.uint8)
    labels = rng.integers(0, classes, batch).astype(np.int32)
    batch_arrays = put_batch(mesh, images, labels)
    state, metrics = train(state, *batch_arrays, key)  # warm-up
    jax.block_until_ready(metrics)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        state, metrics = train(state, *batch_arrays, key)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t)
    median = statistics.median(times)
    return {"model": name, "shape": "x".join(map(str, shape)), "batch": batch,
            "compile_s": compile_s, "step_ms": 1000 * median, "images_per_s": batch / median}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=None, help="override every batch size")
    args = parser.parse_args()
    print(f"# {jax.device_count()} x {jax.devices()[0].device_kind} ({jax.default_backend()}, "
          f"{platform.machine()}), jax {jax.__version__}")
    print("| model | input | batch | compile s | step ms (median) | images/s |")
    print("|---|---|---:|---:|---:|---:|")
    for name in args.models:
        r = measure(name, args.steps, args.batch)
        print(f"| {r['model']} | {r['shape']} | {r['batch']} | {r['compile_s']:.1f} | "
              f"{r['step_ms']:.1f} | {r['images_per_s']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
