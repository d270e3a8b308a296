"""A pool whose cotangent depends on its own output: `jit(grad(sum(relu(pool(x)) ** 2)))`
(a benchmark, not a test).

    python bench/pooling_cotangent.py [--repeats 15] [--without-materialised-primal]

In `bench/pooling.py` the cotangent is an argument; here it is computed from the pool's
output, as it is when an elementwise op follows the pool. XLA fuses such a cotangent
into the transposed pool and, unless the forward value is a buffer, re-evaluates the
whole window reduction once per tap. poolnets materialises the value under
differentiation for that reason; `--without-materialised-primal` swaps that for the
identity to show what it buys. Medians of `--repeats` calls, poolnets and flax.linen
alternating; run with `--glibc-reuse`'s environment (see bench/pooling.py) to leave page
faults out.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from poolnets.pooling import avg_pool, indices, max_pool, windowed

STEM = (32, 112, 112, 64)
PAD1 = ((1, 1), (1, 1))
CASES = {
    "max 3x3 s2 p1": (functools.partial(max_pool, window_shape=(3, 3), strides=2, padding=1),
                      functools.partial(nn.max_pool, window_shape=(3, 3), strides=(2, 2),
                                        padding=PAD1)),
    "avg 3x3 s2 p1 cip=F": (
        functools.partial(avg_pool, window_shape=(3, 3), strides=2, padding=1,
                          count_include_pad=False),
        functools.partial(nn.avg_pool, window_shape=(3, 3), strides=(2, 2), padding=PAD1,
                          count_include_pad=False)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--without-materialised-primal", action="store_true")
    args = parser.parse_args()
    if args.without_materialised_primal:
        windowed.materialized = indices.materialized = lambda a: a
    x = jax.device_put(np.random.default_rng(0).standard_normal(STEM).astype(np.float32))
    print(f"jax {jax.__version__}, cpus {os.cpu_count()}, load average before "
          f"{os.getloadavg()}, shape {'x'.join(map(str, STEM))}, materialised primal: "
          f"{not args.without_materialised_primal}")
    print("| op | library | grad ms | compile s |\n|---|---|---|---|")
    for name, pools in CASES.items():
        compiled, times = {}, {}
        for lib, pool in zip(("poolnets", "flax.linen"), pools, strict=True):
            grad = jax.grad(lambda a, pool=pool: jnp.sum(jax.nn.relu(pool(a)) ** 2))
            t0 = time.perf_counter()
            compiled[lib] = jax.jit(grad).lower(x).compile()
            times[lib] = ([], time.perf_counter() - t0)
            compiled[lib](x).block_until_ready()
        for _ in range(args.repeats):
            for lib, fn in compiled.items():
                t0 = time.perf_counter()
                fn(x).block_until_ready()
                times[lib][0].append((time.perf_counter() - t0) * 1e3)
        for lib, (runs, compile_s) in times.items():
            print(f"| {name} | {lib} | {statistics.median(runs):.1f} | {compile_s:.2f} |")


if __name__ == "__main__":
    main()
