"""Compile time and runtime of the adaptive pools; prints two tables.

    python bench/adaptive_compile.py [--batch 8] [--channels 64] [--repeats 3]

Table 1: compile time (trace + lower + XLA compile, best of `--repeats`) of `jax.jit` of
the forward and of forward + VJP (cotangent passed in), from a (batch, 112, 112, channels) float32
input to 7x7 and 56x56 outputs (both evenly dividing 112) and to 9x9 and 57x57 (uneven,
overlapping bins: the gather path). The program has a fixed number of ops per spatial axis,
so compile time should not grow with the output size.

Table 2: runtime (median of timed calls after a warm-up) of adaptive_avg_pool to 7x7,
forward and forward+VJP (cotangent passed in), from 14x14 and 56x56 inputs, next to
`flax.linen.avg_pool` with window = stride = L/7 (the same numbers when 7 divides L) as a
baseline.
"""

from __future__ import annotations

import argparse
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp

from poolnets.pooling import adaptive_avg_pool, adaptive_max_pool


def compile_seconds(make_fn, specs, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        fn = make_fn()  # a fresh function each time, so nothing comes from a cache
        start = time.perf_counter()
        jax.jit(fn).lower(*specs).compile()
        best = min(best, time.perf_counter() - start)
    return best


def run_seconds(fn, args, calls: int) -> float:
    compiled = jax.jit(fn)
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fwd_bwd(op):
    """(x, g) -> (op(x), input gradient of sum(g * op(x))). The cotangent is an input so that
    XLA cannot constant-fold the backward pass of a linear op (as it can for grad(sum))."""

    def run(x, g):
        y, pullback = jax.vjp(op, x)
        return y, pullback(g)[0]

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    n, c = args.batch, args.channels
    print(
        f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}"
    )

    x_spec = jax.ShapeDtypeStruct((n, 112, 112, c), jnp.float32)
    print(f"\ncompile seconds, input {x_spec.shape} float32 (best of {args.repeats})")
    print(f"| {'op':<17} | {'output':>6} | {'jit(fwd)':>8} | {'jit(fwd+vjp)':>12} |")
    print(f"|{'-' * 19}|{'-' * 8}|{'-' * 10}|{'-' * 14}|")
    for name, pool in (
        ("adaptive_avg_pool", adaptive_avg_pool),
        ("adaptive_max_pool", adaptive_max_pool),
    ):
        for out in (7, 56, 9, 57):
            size = (out, out)
            g_spec = jax.ShapeDtypeStruct((n, out, out, c), jnp.float32)
            fwd = compile_seconds(lambda p=pool, s=size: lambda a: p(a, s), [x_spec], args.repeats)
            bwd = compile_seconds(
                lambda p=pool, s=size: fwd_bwd(lambda a: p(a, s)), [x_spec, g_spec], args.repeats
            )
            print(f"| {name:<17} | {out:>2}x{out:<3} | {fwd:>8.3f} | {bwd:>12.3f} |")

    key = jax.random.key(0)
    print(f"\nruntime ms to 7x7, median of {args.calls} calls, batch {n}, channels {c}")
    print(f"| {'input':>7} | {'op':<32} | {'fwd':>8} | {'fwd+bwd':>8} |")
    print(f"|{'-' * 9}|{'-' * 34}|{'-' * 10}|{'-' * 10}|")
    for length in (14, 56):
        x = jax.random.normal(key, (n, length, length, c), jnp.float32)
        g = jax.random.normal(key, (n, 7, 7, c), jnp.float32)
        k = length // 7
        ops = {
            "adaptive_avg_pool(x, (7, 7))": lambda a: adaptive_avg_pool(a, (7, 7)),
            f"flax avg_pool {k}x{k} stride {k}": lambda a, k=k: nn.avg_pool(a, (k, k), (k, k)),
        }
        for name, op in ops.items():
            fwd = run_seconds(op, [x], args.calls)
            both = run_seconds(fwd_bwd(op), [x, g], args.calls)
            print(
                f"| {length:>3}x{length:<3} | {name:<32} | {fwd * 1e3:>8.3f} | {both * 1e3:>8.3f} |"
            )


if __name__ == "__main__":
    main()
