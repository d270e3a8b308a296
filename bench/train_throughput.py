"""Images/s of the jitted train step and of the forward pass: the NNX model as the trainer
runs it, against the same network as a Linen module, paired in one process. A benchmark,
not a test.

    python bench/train_throughput.py                     # lenet5, resnet20, resnet18, resnet50
    python bench/train_throughput.py --models lenet5 resnet20 --steps 30
    python bench/train_throughput.py --models lenet5 --linen01 083bcf5   # + the 0.1 Linen zoo

Contenders, all ahead-of-time compiled with the trainer's shardings over a mesh of all
local devices, on the same synthetic uint8 batch and the same optimizer (SGD, Nesterov
momentum 0.9, weight decay 5e-4, `poolnets.training.optim`):
- nnx: `poolnets.models.create` run by `poolnets.training.steps.compile_steps` over split
  state, exactly as train.py runs it;
- linen: `poolnets.models.create_linen` (the NNX definitions through flax.nnx.bridge) in a
  minimal Linen train step here: the same preprocessing, loss and metrics, BatchNorm
  statistics through `mutable=["batch_stats"]`, rngs "dropout" and "pool";
- linen01 (with `--linen01 REV`): the hand-written Linen zoo of 0.1, read from git revision
  REV (`git archive REV poolnets`, imported as package `poolnets01` from a temporary
  directory; this checkout is not touched), in the same Linen step.
The forward pass is `model(x, train=False)` on the preprocessed batch, jitted likewise.

Timing: after one warm-up call each, `--steps` rounds; in each round every contender runs
`--block` train steps (queued, then waited on) in a random order, then `--block` forward
calls likewise. images/s = batch / median time per call; the paired ratio of a round is
nnx images/s / other images/s (the other's time / nnx's time, same round), reported as its
median, an about-95% confidence interval of that median (order statistics) and its
quartiles. Alternating keeps the load of a shared machine the same for both; the load
average is printed. Per contender also XLA's FLOP count and the number of instructions of
each optimised program, to tell a slower program from a slower call. compile s: lowering
and compiling the train step and the forward (nnx: compile_steps, which also compiles the
trainer's eval step).
"""

from __future__ import annotations

import argparse
import atexit
import functools
import io
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen, nnx
from jax.sharding import NamedSharding, PartitionSpec

from poolnets.data import Preprocess, preprocess
from poolnets.models import create, create_linen
from poolnets.training.optim import make_optimizer, make_schedule
from poolnets.training.state import TrainState, count_params, create_train_state
from poolnets.training.steps import (
    DATA_AXIS,
    compile_steps,
    make_mesh,
    put_batch,
    put_replicated,
)

# (model, image shape, batch, classes): CPU-sized batches; ResNet-50 at 224 with a small one.
CASES = {
    "lenet5": ((32, 32, 1), 256, 10),
    "resnet20": ((32, 32, 3), 128, 10),
    "resnet18": ((32, 32, 3), 128, 10),
    "resnet50": ((224, 224, 3), 8, 1000),
}
SPEC = Preprocess(scale=1 / 255, max_shift=2, flip=True)


def make_tx() -> optax.GradientTransformation:
    return make_optimizer("sgd", make_schedule("constant", 0.01, 10**6, 0), weight_decay=5e-4)


class Contender:
    """One implementation of a model: its compiled train step and forward, and their state."""

    def __init__(self, label: str, train: Callable, state: Any, forward: Callable,
                 variables: Any, params: int, compile_s: float) -> None:
        self.label, self.train, self.state = label, train, state
        self.forward, self.variables = forward, variables
        self.params, self.compile_s = params, compile_s
        self.times: dict[str, list[float]] = {"train": [], "forward": []}
        self.flops = {"train": _flops(train), "forward": _flops(forward)}
        # Instructions of the optimised HLO: equal programs have (nearly) equal counts.
        self.hlo = {"train": _instructions(train), "forward": _instructions(forward)}


def _flops(compiled: Any) -> float:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost  # a list in older jax
    return float((cost or {}).get("flops", float("nan")))


def _instructions(compiled: Any) -> int:
    return sum(1 for line in compiled.as_text().splitlines()
               if re.match(r"\s+(ROOT )?%?[\w.-]+ = ", line))


def _compile(fn: Callable, mesh: Any, args: tuple, shardings: tuple, out: Any,
             donate: tuple = ()) -> Any:
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), args)
    return jax.jit(fn, in_shardings=shardings, out_shardings=out,
                   donate_argnums=donate).lower(*abstract).compile()


def nnx_contender(name: str, shape: tuple, batch: int, classes: int, mesh: Any,
                  x: jax.Array) -> Contender:
    """The trainer's own step (compile_steps) and an NNX forward over split state."""
    tx = make_tx()
    build = functools.partial(create, name, num_classes=classes)
    graphdef, state = create_train_state(build, tx, jax.random.key(0), shape)
    state = put_replicated(mesh, state)
    t0 = time.perf_counter()
    train, _ = compile_steps(mesh, state, (batch, *shape), (batch, *shape),
                             image_dtype=jnp.uint8, model=graphdef, tx=tx,
                             num_classes=classes, label_smoothing=0.0, preprocess_spec=SPEC)

    def forward(variables: tuple, x: jax.Array) -> jax.Array:
        return nnx.merge(graphdef, *variables)(x, train=False)

    # The forward's own copy: the train step donates (consumes) `state`.
    variables = jax.tree.map(jnp.copy, (state.params, state.batch_stats, state.rngs))
    rep, shard = _shardings(mesh)
    fwd = _compile(forward, mesh, (variables, x), (rep, shard), rep)
    return Contender("nnx", train, state, fwd, variables, count_params(state.params),
                     time.perf_counter() - t0)


def _shardings(mesh: Any) -> tuple[NamedSharding, NamedSharding]:
    return NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def linen_train_step(state: TrainState, images: jax.Array, labels: jax.Array, key: jax.Array,
                     *, module: Any, tx: optax.GradientTransformation, num_classes: int
                     ) -> tuple[TrainState, dict]:
    """The trainer's train step (poolnets.training.steps.train_step) for a Linen module:
    `state.rngs` is one key, from which each step draws its "dropout" and "pool" keys."""
    images = preprocess(images, jax.random.fold_in(key, state.step), SPEC)
    targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), 0.0)
    dropout, pool = jax.random.split(jax.random.fold_in(state.rngs, state.step))
    stats = {"batch_stats": state.batch_stats} if state.batch_stats else {}

    def loss_fn(params: Any) -> tuple[jax.Array, tuple[jax.Array, Any]]:
        logits, updates = module.apply({"params": params, **stats}, images, train=True,
                                       mutable=["batch_stats"],
                                       rngs={"dropout": dropout, "pool": pool})
        logits = logits.astype(jnp.float32)
        loss = optax.softmax_cross_entropy(logits, targets).mean()
        return loss, (logits, updates.get("batch_stats", {}))

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    new_state = state.replace(step=state.step + 1,
                              params=optax.apply_updates(state.params, updates),
                              batch_stats=batch_stats, opt_state=opt_state)
    grad_norm = optax.tree.norm(grads)
    return new_state, {"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels),
                       "grad_norm": grad_norm,
                       "finite": jnp.isfinite(loss) & jnp.isfinite(grad_norm)}


def linen_contender(label: str, module: Any, shape: tuple, batch: int, classes: int,
                    mesh: Any, x: jax.Array) -> Contender:
    """A Linen module in `linen_train_step`, compiled with the trainer's shardings."""
    tx = make_tx()
    sample = jnp.zeros((1, *shape), jnp.float32)

    def init(key: jax.Array) -> TrainState:
        keys = dict(zip(("params", "dropout", "pool"), jax.random.split(key, 3), strict=True))
        variables = module.init(keys, sample, train=False)
        params = variables["params"]
        return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                          batch_stats=variables.get("batch_stats", {}),
                          rngs=jax.random.fold_in(key, 1), opt_state=tx.init(params))

    # Compiled unoptimised, as create_train_state does: it runs once.
    init_c = jax.jit(init).lower(jax.random.key(0)).compile(
        {"xla_backend_optimization_level": 0})
    state = put_replicated(mesh, init_c(jax.random.key(0)))
    rep, shard = _shardings(mesh)
    t0 = time.perf_counter()
    step = functools.partial(linen_train_step, module=module, tx=tx, num_classes=classes)
    images = jax.ShapeDtypeStruct((batch, *shape), jnp.uint8)
    labels = jax.ShapeDtypeStruct((batch,), jnp.int32)
    train = _compile(step, mesh, (state, images, labels, jax.random.key(0)),
                     (rep, shard, shard, rep), (rep, rep), donate=(0,))

    def forward(variables: dict, x: jax.Array) -> jax.Array:
        return module.apply(variables, x, train=False)

    variables = {"params": jax.tree.map(jnp.copy, state.params)}
    if state.batch_stats:
        variables["batch_stats"] = jax.tree.map(jnp.copy, state.batch_stats)
    fwd = _compile(forward, mesh, (variables, x), (rep, shard), rep)
    return Contender(label, train, state, fwd, variables, count_params(state.params),
                     time.perf_counter() - t0)


def import_linen01(rev: str) -> Callable[..., Any]:
    """`create` of the 0.1 Linen zoo at git revision `rev`: its `poolnets` package extracted
    into a temporary directory and imported as `poolnets01` (every `poolnets` import
    renamed), beside the current package."""
    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(["git", "-C", str(root), "archive", "--format=tar", rev,
                              "poolnets"], capture_output=True, check=False)
    if archive.returncode:
        raise ValueError(f"git archive {rev} poolnets failed: "
                         f"{archive.stderr.decode().strip().splitlines()[-1]}")
    tmp = Path(tempfile.mkdtemp(prefix="poolnets01-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # imported by then
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(tmp, filter="data")
    (tmp / "poolnets").rename(tmp / "poolnets01")
    for path in (tmp / "poolnets01").rglob("*.py"):
        path.write_text(re.sub(r"\bpoolnets\b", "poolnets01", path.read_text()))
    sys.path.insert(0, str(tmp))
    from poolnets01.models import create as create01  # noqa: PLC0415  (made just above)

    if not isinstance(create01("lenet5", num_classes=10), linen.Module):
        raise ValueError(f"poolnets.models.create of {rev} does not return a Linen module "
                         f"(0.1's Linen zoo is at 083bcf5 and before)")
    return create01


def run_pair(contenders: list[Contender], batch_arrays: tuple, key: jax.Array, x: jax.Array,
             rounds: int, block: int, seed: int = 0) -> None:
    """Warm-up, then `rounds` rounds of `block` calls per contender, in a random order."""
    order = np.random.default_rng(seed)

    def train(c: Contender) -> None:
        for _ in range(block):
            c.state, metrics = c.train(c.state, *batch_arrays, key)
        jax.block_until_ready(metrics)

    def forward(c: Contender) -> None:
        for _ in range(block):
            out = c.forward(c.variables, x)
        jax.block_until_ready(out)

    for c in contenders:
        train(c)
        forward(c)
    for _ in range(rounds):
        for kind, call in (("train", train), ("forward", forward)):
            for i in order.permutation(len(contenders)):
                t = time.perf_counter()
                call(contenders[i])
                contenders[i].times[kind].append((time.perf_counter() - t) / block)


def summary(values: list[float]) -> str:
    """"median [about-95% confidence interval of the median] (quartiles)": the interval between
    the order statistics n/2 -+ 0.98 sqrt(n) (distribution-free, normal approximation)."""
    v = sorted(values)
    n = len(v)
    half = 0.98 * n**0.5
    lo, hi = max(int(np.floor(n / 2 - half)), 0), min(int(np.ceil(n / 2 + half)), n - 1)
    q1, q2, q3 = np.percentile(v, [25, 50, 75])
    return f"{q2:.3f} [{v[lo]:.3f}, {v[hi]:.3f}] ({q1:.3f}-{q3:.3f})"


def load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--steps", type=int, default=20,
                        help="timed rounds per model (each contender's timed calls, x --block)")
    parser.add_argument("--block", type=int, default=1, help="calls per contender per round")
    parser.add_argument("--batch", type=int, default=None, help="override every batch size")
    parser.add_argument("--linen01", metavar="REV", default=None,
                        help="also time the 0.1 hand-written Linen zoo at git revision REV")
    args = parser.parse_args()
    for flag in ("steps", "block", "batch"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag} must be >= 1, got {value}")
    try:
        create01 = import_linen01(args.linen01) if args.linen01 else None
    except ValueError as e:
        parser.error(f"--linen01 {args.linen01!r}: {e}")
    print(f"# {jax.device_count()} x {jax.devices()[0].device_kind} ({jax.default_backend()}, "
          f"{platform.machine()}, {os.cpu_count()} cores), jax {jax.__version__}; "
          f"rounds (--steps) {args.steps}, block {args.block}", flush=True)
    results, ratios = [], []
    mesh = make_mesh()
    for name in args.models:
        shape, batch, classes = CASES[name]
        batch = args.batch or batch
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (batch, *shape), dtype=np.uint8)
        labels = rng.integers(0, classes, batch).astype(np.int32)
        batch_arrays = put_batch(mesh, images, labels)
        x = put_batch(mesh, np.asarray(preprocess(images, None, SPEC)))[0]
        key = put_replicated(mesh, jax.random.key(1))
        contenders = [nnx_contender(name, shape, batch, classes, mesh, x),
                      linen_contender("linen", create_linen(name, num_classes=classes),
                                      shape, batch, classes, mesh, x)]
        if create01 is not None:
            contenders.append(linen_contender("linen01", create01(name, num_classes=classes),
                                              shape, batch, classes, mesh, x))
        start = load()
        run_pair(contenders, batch_arrays, key, x, args.steps, args.block)
        for c in contenders:
            results.append((name, shape, batch, c))
        for other in contenders[1:]:
            ratios.append((name, other, {
                kind: summary([o / n for n, o in zip(contenders[0].times[kind],
                                                       other.times[kind], strict=True)])
                for kind in ("train", "forward")}, start, load()))
    print("\n| model | contender | input | batch | params | compile s | train ms | "
          "train img/s | forward ms | forward img/s | GFLOP train, forward | "
          "HLO instructions train, forward |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, shape, batch, c in results:
        train, fwd = (statistics.median(c.times[k]) for k in ("train", "forward"))
        print(f"| {name} | {c.label} | {'x'.join(map(str, shape))} | {batch} | {c.params:,} | "
              f"{c.compile_s:.1f} | {1e3 * train:.2f} | {batch / train:.0f} | "
              f"{1e3 * fwd:.2f} | {batch / fwd:.0f} | {c.flops['train'] / 1e9:.3f}, "
              f"{c.flops['forward'] / 1e9:.3f} | {c.hlo['train']:,}, {c.hlo['forward']:,} |")
    print("\npaired ratio nnx img/s / other img/s over rounds: median [about-95% CI of the median]"
          " (quartiles)\n")
    print("| model | vs | train ratio | forward ratio | load avg at start | at end |")
    print("|---|---|---|---|---|---|")
    for name, other, cell, start, end in ratios:
        print(f"| {name} | {other.label} | {cell['train']} | {cell['forward']} | "
              f"{start} | {end} |")


if __name__ == "__main__":
    main()
