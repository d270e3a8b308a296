"""The zoo benchmark: inference and train-step images/s, parameters, FLOPs per image and
compile time of every model x pool x batch x dtype, on whatever device JAX has. A
benchmark, not a test.

    python bench/zoo.py                                   # all 21 models, max/avg/blur
    python bench/zoo.py --models 'resnet*' --pools max --batches 1,64 --dtypes bfloat16
    nice python bench/zoo.py --width 0.25 --models lenet5,resnet20 --steps 5   # CPU

Measured as timm's benchmark.py does: per case the model is built (NNX,
`poolnets.models.nnx.create`, at its published input size and class count, `downsample=`
the pool, `width=`), the inference function (`model(x, train=False)`) and a train step
(forward in train mode, softmax cross-entropy, backward, SGD with momentum; BatchNorm
statistics updated; state donated) are jit-compiled for the batch (compile s: lowering +
compilation of both), run `--warmup` times, then `--steps` times, each step waited on;
img/s = batch / median step time. dtype is the compute dtype (parameters stay float32, as
in mixed-precision training); inputs are random normal in that dtype. Weights are random
(filled from the abstract model, which avoids eager initialisation of large models): speed
does not depend on their values. FLOPs per image: `poolnets.analysis.cost.xla_cost` of the
float32 forward pass at batch 1 (XLA's count: 2 per multiply-add). Default batches: 1 and
32 on CPU, 1, 64 and 256 on an accelerator. bfloat16 on XLA:CPU is emulated (converted to
float32 around most ops), so its CPU numbers say nothing about bfloat16 hardware.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from poolnets.analysis.cost import xla_cost
from poolnets.models import nnx as zoo

POOLS = ("max", "avg", "blur")
DTYPES = ("float32", "bfloat16")
COLUMNS = ("model", "pool", "batch", "dtype", "infer img/s", "train img/s", "params",
           "MFLOPs/img", "compile s")


def published(name: str) -> tuple[tuple[int, ...], int]:
    """(input shape (H, W, C), classes) the model was published with: 224 x 224 ImageNet
    (1000 classes) for VGG and the ImageNet ResNets, 32 x 32 with 10 classes otherwise."""
    model = nnx.eval_shape(lambda: zoo.create(name, num_classes=10))
    shape = tuple(model.pretrained_cfg["input_size"])
    return shape, 1000 if shape[0] == 224 else 10


def build(name: str, pool: str, width: float, dtype: str, classes: int) -> nnx.Module:
    """The model with random weights, built abstractly and filled (no eager init)."""
    # lenet5_1998 has no width option (its C3 connection table is fixed): full size
    options = {"width": width} if width != 1.0 and "width" in zoo.overrides_of(name) else {}
    abstract = nnx.eval_shape(lambda: zoo.create(
        name, num_classes=classes, downsample=pool, dtype=jnp.dtype(dtype), **options))
    graphdef, state = nnx.split(abstract)
    rng = np.random.default_rng(0)

    def fill(path: tuple, leaf: Any) -> Any:
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(np.zeros((*leaf.shape, 2), np.uint32))
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            return np.zeros(leaf.shape, leaf.dtype)
        names = [getattr(k, "key", None) for k in path]  # DictKeys: module/variable names
        if "var" in names or "scale" in names:  # BatchNorm/LayerNorm: positive variances
            return np.ones(leaf.shape, leaf.dtype)
        return (rng.standard_normal(leaf.shape, np.float32) * 0.02).astype(leaf.dtype)

    return nnx.merge(graphdef, jax.tree_util.tree_map_with_path(fill, state))


def timed(fn: Callable[[], Any], warmup: int, steps: int) -> float:
    """Median seconds of `fn()` (each call waited on) after `warmup` calls."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(name: str, pool: str, batch: int, dtype: str, args: argparse.Namespace,
            shape: tuple[int, ...], classes: int) -> dict[str, Any]:
    model = build(name, pool, args.width, dtype, classes)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((batch, *shape), np.float32), dtype)
    y = jnp.asarray(rng.integers(0, classes, batch), jnp.int32)
    tx = optax.sgd(0.01, momentum=0.9)

    def infer(params: Any, rest: Any, x: jax.Array) -> jax.Array:
        return nnx.merge(graphdef, params, rest)(x, train=False)

    def train(params: Any, rest: Any, opt_state: Any, x: jax.Array, y: jax.Array) -> tuple:
        model = nnx.merge(graphdef, params, rest)

        def loss_fn(model: nnx.Module) -> jax.Array:
            logits = model(x, train=True).astype(jnp.float32)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        # nnx.value_and_grad (not jax's) lets BatchNorm update its statistics in the trace
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        _, params, rest = nnx.split(model, nnx.Param, ...)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), rest, opt_state, loss

    opt_state = tx.init(params)
    t = time.perf_counter()
    infer_c = jax.jit(infer).lower(params, rest, x).compile()
    train_c = None
    if not args.no_train:
        train_c = jax.jit(train, donate_argnums=(0, 1, 2)).lower(
            params, rest, opt_state, x, y).compile()
    compile_s = time.perf_counter() - t
    row = {"model": name, "pool": pool, "batch": batch, "dtype": dtype,
           "params": sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params)),
           "compile s": compile_s}
    row["infer img/s"] = batch / timed(lambda: infer_c(params, rest, x), args.warmup,
                                       args.steps)
    if train_c is not None:
        carry = [params, rest, opt_state]

        def step() -> jax.Array:
            *carry[:], loss = train_c(*carry, x, y)  # the donated state, replaced
            return loss

        row["train img/s"] = batch / timed(step, args.warmup, args.steps)
    return row


def flops_per_image(name: str, pool: str, width: float, shape: tuple[int, ...],
                    classes: int) -> float:
    """XLA's FLOP count of the float32 forward pass of one image."""
    graphdef, state = nnx.split(build(name, pool, width, "float32", classes))
    x = jax.ShapeDtypeStruct((1, *shape), jnp.float32)
    return xla_cost(lambda s, x: nnx.merge(graphdef, s)(x, train=False), state, x)["flops"]


def fmt(row: dict[str, Any]) -> str:
    cells = []
    for column in COLUMNS:
        value = row.get(column)
        if value is None:
            cells.append("-")
        elif column in ("infer img/s", "train img/s"):
            cells.append(f"{value:,.1f}" if value < 100 else f"{value:,.0f}")
        elif column == "params":
            cells.append(f"{value:,}")
        elif column == "MFLOPs/img":
            cells.append(f"{value / 1e6:,.3f}" if value < 1e6 else f"{value / 1e6:,.1f}")
        elif column == "compile s":
            cells.append(f"{value:.1f}")
        else:
            cells.append(str(value))
    return "| " + " | ".join(cells) + " |"


def fail(message: str) -> None:
    """Bad command-line input: one line on stderr, exit status 2."""
    print(f"zoo.py: error: {message}", file=sys.stderr)
    sys.exit(2)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own errors, one line too
        fail(message)


def choose(text: str, choices: list[str] | tuple[str, ...], what: str) -> list[str]:
    """Comma-separated names or fnmatch patterns, each matching at least one choice."""
    chosen: list[str] = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        hits = [c for c in choices if fnmatch.fnmatchcase(c, item)]
        if not hits:
            fail(f"--{what} {item!r} matches nothing; choices: {', '.join(choices)}")
        chosen += [h for h in hits if h not in chosen]
    if not chosen:
        fail(f"--{what} is empty; choices: {', '.join(choices)}")
    return chosen


def positive_ints(text: str, what: str) -> list[int]:
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        fail(f"--{what} {text!r} must be positive integers, comma-separated")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = _Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="*", help="names or fnmatch patterns, comma-separated")
    p.add_argument("--pools", default=",".join(POOLS),
                   help="downsample names (poolnets.models.nnx.downsample_names())")
    p.add_argument("--batches", default=None, help="default 1,32 on CPU, else 1,64,256")
    p.add_argument("--dtypes", default=",".join(DTYPES), help="float32, bfloat16")
    p.add_argument("--width", type=float, default=1.0, help="channel multiplier (CPU: 0.25)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per case")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps after compiling")
    p.add_argument("--no-train", action="store_true", help="time inference only")
    args = p.parse_args(argv)
    args.models = choose(args.models, zoo.list_models(), "models")
    args.pools = choose(args.pools, zoo.downsample_names(), "pools")
    args.dtypes = choose(args.dtypes, DTYPES, "dtypes")
    default = "1,32" if jax.default_backend() == "cpu" else "1,64,256"
    args.batches = positive_ints(args.batches or default, "batches")
    if not args.width > 0 or args.steps < 1 or args.warmup < 0:
        fail(f"--width must be > 0 (got {args.width}), --steps >= 1 (got {args.steps}), "
             f"--warmup >= 0 (got {args.warmup})")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = jax.devices()[0]
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"# poolnets zoo benchmark: {' '.join(['bench/zoo.py', *(argv or sys.argv[1:])])}")
    print(f"# models: NNX (poolnets.models.nnx.create), width {args.width}; device "
          f"{device.device_kind} ({jax.default_backend()}, {jax.device_count()} device(s), "
          f"{platform.machine()}, {os.cpu_count()} CPUs); jax {jax.__version__}; "
          f"{args.steps} timed steps after {args.warmup} warm-up; load average at start "
          f"{load}")
    if jax.default_backend() == "cpu" and "bfloat16" in args.dtypes:
        print("# bfloat16 on XLA:CPU is emulated (float32 arithmetic plus conversions)")
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS), flush=True)
    for name in args.models:
        shape, classes = published(name)
        for pool in args.pools:
            flops = flops_per_image(name, pool, args.width, shape, classes)
            for batch in args.batches:
                for dtype in args.dtypes:
                    try:
                        row = measure(name, pool, batch, dtype, args, shape, classes)
                    except Exception as e:  # noqa: BLE001 -- one failed case, not the table
                        print(f"| {name} | {pool} | {batch} | {dtype} | failed: "
                              f"{type(e).__name__}: {' '.join(str(e).split())[:200]} |",
                              flush=True)
                        continue
                    row["MFLOPs/img"] = flops
                    print(fmt(row), flush=True)
    print(f"# load average at end {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
