"""Pooling speed: poolnets vs flax.linen vs PyTorch CPU, one table (a benchmark, not a test).

    python bench/pooling.py [--repeats 7] [--only max,avg] [--small] [--settle-calls 1]

Torch columns appear when `torch` is importable; run with a Python that has jax, flax and
torch, e.g. `PYTHONPATH=/tmp/torchvenv/lib/python3.11/site-packages .venv/bin/python
bench/pooling.py` (torch's venv appended to the path; never a dependency of poolnets).
On a GPU machine JAX runs on its default device; `--torch-device cuda` puts torch there
too (cuDNN), timed with `torch.cuda.synchronize()`.

Per case and library: `fwd ms` is the median of `--repeats` timed calls of the jitted
forward; `fwd+bwd ms` the median of a jitted `jax.vjp` with a random cotangent passed in
as an argument (so XLA cannot constant-fold it; torch: `y.backward(g)` with the same
random g); `fwd+bwd page faults` the median number of minor page faults the process took
during one fwd+bwd call (see the allocator note); `compile s` is trace + lower + XLA
compile of the forward / of the VJP (JAX only). The libraries run interleaved in the
same loop (poolnets, flax, torch NHWC, torch NCHW, order rotated every repeat) so machine
load affects them alike; each timed call follows `--settle-calls` untimed calls of the
same function, so it runs in that library's steady state rather than against the other
library's worker threads, which spin-wait after each call (2 cores, 4 threads). A pause
before each call instead was tried and is unfair to torch: its small ops then took
several times longer, waking OpenMP threads that had gone to sleep.
`fwd+bwd ÷ torch NHWC` is the median over repeats of the fwd+bwd time divided by torch
channels_last's in the same repeat, `fwd ÷ flax.linen` the same for forwards: paired
ratios, so that drifts in the machine's speed hit both sides alike. float32,
channels-last for JAX.

Allocator: these ops are memory-bound and both XLA:CPU and PyTorch allocate every output
fresh, so page faults on new memory can dominate a fwd+bwd time, and who pays them
depends on glibc and the process's allocation history, not on the pooling code. PyTorch
allocates on the calling thread, from a heap that sometimes keeps freed blocks; XLA:CPU
allocates from its worker threads' arenas, whose heaps glibc unmaps or trims when the
buffers are freed, so calls fault their outputs in again (the page-fault column).
`--glibc-reuse` re-executes the script with `MALLOC_ARENA_MAX=1` and mmap/trim
thresholds of 4 GiB, so glibc keeps freed memory for both libraries and the table
compares compute, not the kernel's page zeroing. The default is the allocator every
user gets.
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import statistics
import sys
import time

import flax.linen as nn
import jax
import numpy as np

from poolnets.pooling import adaptive_avg_pool, avg_pool, lp_pool, max_pool

try:
    import torch
    import torch.nn.functional as F  # noqa: N812
except ImportError:  # torch is optional
    torch = None


def _case(name, shape, ours, flax_fn, torch_fn):
    return {"name": name, "shape": shape, "ours": ours, "flax": flax_fn, "torch": torch_fn}


def cases(small: bool):
    stem = (8, 112, 112, 64) if small else (32, 112, 112, 64)
    tile = (32, 32, 32, 64) if small else (128, 32, 32, 64)
    vol = (2, 16, 56, 56, 64) if small else (8, 16, 56, 56, 64)
    pad1 = ((1, 1), (1, 1))
    yield _case("max 3x3 s2 p1", stem, functools.partial(max_pool, window_shape=(3, 3),
                strides=2, padding=1),
                functools.partial(nn.max_pool, window_shape=(3, 3), strides=(2, 2),
                                  padding=pad1),
                lambda t: F.max_pool2d(t, 3, 2, 1))
    yield _case("max 2x2 s2", tile, functools.partial(max_pool, window_shape=(2, 2)),
                functools.partial(nn.max_pool, window_shape=(2, 2), strides=(2, 2)),
                lambda t: F.max_pool2d(t, 2, 2))
    # odd input, no padding (AlexNet/GoogLeNet-style): the transposed interleave writes
    # an odd-sized cotangent, which XLA:CPU runs ~2x slower than an even-sized one
    odd = (8, 113, 113, 64) if small else (32, 113, 113, 64)
    yield _case("max 3x3 s2 VALID", odd, functools.partial(max_pool, window_shape=(3, 3),
                strides=2),
                functools.partial(nn.max_pool, window_shape=(3, 3), strides=(2, 2)),
                lambda t: F.max_pool2d(t, 3, 2))
    yield _case("max3d 3x3x3 s2 p1", vol,
                functools.partial(max_pool, window_shape=(3, 3, 3), strides=2, padding=1),
                functools.partial(nn.max_pool, window_shape=(3, 3, 3), strides=(2, 2, 2),
                                  padding=((1, 1),) * 3),
                lambda t: F.max_pool3d(t, 3, 2, 1))
    yield _case("avg 3x3 s2 p1 cip=F", stem,
                functools.partial(avg_pool, window_shape=(3, 3), strides=2, padding=1,
                                  count_include_pad=False),
                functools.partial(nn.avg_pool, window_shape=(3, 3), strides=(2, 2),
                                  padding=pad1, count_include_pad=False),
                lambda t: F.avg_pool2d(t, 3, 2, 1, count_include_pad=False))
    yield _case("avg 2x2 s2", tile, functools.partial(avg_pool, window_shape=(2, 2)),
                functools.partial(nn.avg_pool, window_shape=(2, 2), strides=(2, 2)),
                lambda t: F.avg_pool2d(t, 2, 2))
    # flax.linen has no Lp pool; torch's lp_pool2d has no padding
    yield _case("lp p=2 3x3 s2", stem,
                functools.partial(lp_pool, p=2.0, window_shape=(3, 3), strides=2),
                None, lambda t: F.lp_pool2d(t, 2.0, 3, 2))
    yield _case("lp p=2 2x2 s2", tile, functools.partial(lp_pool, p=2.0, window_shape=(2, 2)),
                None, lambda t: F.lp_pool2d(t, 2.0, 2, 2))
    # flax has no adaptive pool; its column is avg_pool with window = stride = L / 7
    for length, c in ((14, 512), (56, 64)):
        k = length // 7
        yield _case(f"adaptive avg {length}->7", (32, length, length, c),
                    functools.partial(adaptive_avg_pool, output_size=(7, 7)),
                    functools.partial(nn.avg_pool, window_shape=(k, k), strides=(k, k)),
                    lambda t: F.adaptive_avg_pool2d(t, 7))


def _block(tree):
    return jax.tree_util.tree_map(lambda a: a.block_until_ready(), tree)


def _jax_runners(fn, x, g):
    def fwd_bwd(x, g):
        y, pull = jax.vjp(fn, x)
        return y, pull(g)[0]

    out = {}
    for key, f, args in (("fwd", fn, (x,)), ("bwd", fwd_bwd, (x, g))):
        t0 = time.perf_counter()
        compiled = jax.jit(f).lower(*args).compile()
        out[key + "_compile"] = time.perf_counter() - t0
        _block(compiled(*args))  # warm-up
        out[key] = functools.partial(compiled, *args)
    return out


def _torch_runners(fn, x_nhwc, g_nhwc, channels_last, device):
    spatial = x_nhwc.ndim - 2
    perm = (0, spatial + 1) + tuple(range(1, spatial + 1))
    x = torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(perm)))
    g = torch.from_numpy(np.ascontiguousarray(g_nhwc.transpose(perm)))
    if channels_last:
        fmt = torch.channels_last if spatial == 2 else torch.channels_last_3d
        x, g = x.contiguous(memory_format=fmt), g.contiguous(memory_format=fmt)
    x, g = x.to(device), g.to(device)
    xg = x.clone().requires_grad_(True)

    def fwd():
        with torch.no_grad():
            return fn(x)

    def bwd():
        xg.grad = None
        fn(xg).backward(g)
        return xg.grad

    fwd(), bwd()  # warm-up
    return {"fwd": fwd, "bwd": bwd}


def _time(run, block, settle_calls: int) -> tuple[float, int]:
    """Milliseconds for one call, and the minor page faults the process took meanwhile."""
    for _ in range(settle_calls):
        block(run())
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0 = time.perf_counter()
    block(run())
    elapsed = (time.perf_counter() - t0) * 1e3
    return elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults


def _paired_ratio(times, lib: str, other: str, kind: str) -> str:
    """Median over repeats of `lib`'s time over `other`'s in the same repeat ("-" if
    `other` did not run or `lib` is not a JAX library)."""
    if other not in times or lib == other or lib.startswith("torch"):
        return "-"
    paired = zip(times[lib][kind], times[other][kind], strict=True)
    return f"{statistics.median(a / b for a, b in paired):.2f}"


def bench_case(case, repeats: int, rng, torch_device: str, settle_calls: int) -> list[list[str]]:
    x = rng.standard_normal(case["shape"]).astype(np.float32)
    if case["name"].startswith("lp"):
        x = np.abs(x) + 0.1  # torch's lp pool is NaN on negative window sums of x**p
    y_shape = jax.eval_shape(case["ours"], x).shape
    g = rng.standard_normal(y_shape).astype(np.float32)
    # on device once: a NumPy argument would be copied into a fresh buffer on every call
    xd, gd = jax.device_put(x), jax.device_put(g)
    libs = {"poolnets": _jax_runners(case["ours"], xd, gd)}
    if case["flax"] is not None:
        libs["flax.linen"] = _jax_runners(case["flax"], xd, gd)
    if torch is not None:
        for name, channels_last in (("torch NHWC", True), ("torch NCHW", False)):
            libs[name] = _torch_runners(case["torch"], x, g, channels_last, torch_device)
    torch_sync = ((lambda r: torch.cuda.synchronize()) if torch_device == "cuda"
                  else (lambda r: r))
    times = {lib: {"fwd": [], "bwd": []} for lib in libs}
    faults = {lib: [] for lib in libs}
    order = list(libs)
    for rep in range(repeats):
        # interleaved, and rotated each repeat, so load and cache state hit all alike
        rotated = order[rep % len(order):] + order[:rep % len(order)]
        for kind in ("fwd", "bwd"):
            for lib in rotated:
                runners = libs[lib]
                block = _block if lib in ("poolnets", "flax.linen") else torch_sync
                ms, page_faults = _time(runners[kind], block, settle_calls)
                times[lib][kind].append(ms)
                if kind == "bwd":
                    faults[lib].append(page_faults)
    rows = []
    for lib, runners in libs.items():
        med = {k: statistics.median(v) for k, v in times[lib].items()}
        compile_s = (f"{runners['fwd_compile']:.2f} / {runners['bwd_compile']:.2f}"
                     if "fwd_compile" in runners else "-")
        rows.append([case["name"], "x".join(map(str, case["shape"])), lib,
                     f"{med['fwd']:.1f}", f"{med['bwd']:.1f}",
                     _paired_ratio(times, lib, "flax.linen", "fwd"),
                     _paired_ratio(times, lib, "torch NHWC", "bwd"),
                     f"{statistics.median(faults[lib]):.0f}", compile_s])
    del libs
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--only", default="", help="comma-separated name prefixes")
    parser.add_argument("--small", action="store_true", help="smaller batches (quick look)")
    parser.add_argument("--glibc-reuse", action="store_true",
                        help="rerun with one glibc arena keeping freed memory (module docstring)")
    parser.add_argument("--settle-calls", type=int, default=1,
                        help="untimed calls before each timed one (module docstring)")
    parser.add_argument("--torch-device", choices=("cpu", "cuda"), default="cpu",
                        help="where torch runs (JAX runs on its default device)")
    args = parser.parse_args()
    if args.torch_device == "cuda" and not (torch is not None and torch.cuda.is_available()):
        parser.error("--torch-device cuda: torch with CUDA is not available here")
    if args.glibc_reuse and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        env = dict(os.environ, MALLOC_ARENA_MAX="1", MALLOC_MMAP_THRESHOLD_=str(2**32),
                   MALLOC_TRIM_THRESHOLD_=str(2**32))
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    rng = np.random.default_rng(0)
    prefixes = [p for p in args.only.split(",") if p]
    header = ["op", "shape", "library", "fwd ms", "fwd+bwd ms", "fwd ÷ flax.linen",
              "fwd+bwd ÷ torch NHWC",
              "fwd+bwd page faults",
              "compile s (fwd / vjp)"]
    print(f"jax {jax.__version__}, torch {torch.__version__ if torch else 'absent'} "
          f"({torch.get_num_threads() if torch else 0} threads), cpus {os.cpu_count()}, "
          f"load average before {os.getloadavg()}, repeats {args.repeats}, "
          f"settle calls {args.settle_calls}, "
          f"MALLOC_ARENA_MAX={os.environ.get('MALLOC_ARENA_MAX', 'unset')}, "
          f"MALLOC_MMAP_THRESHOLD_={os.environ.get('MALLOC_MMAP_THRESHOLD_', 'unset')}; "
          "fwd+bwd = jax.vjp with a random cotangent argument (torch: backward(g)); "
          f"jax device {jax.devices()[0].device_kind}, torch device {args.torch_device}"
          + (f" ({torch.cuda.get_device_name()})" if args.torch_device == "cuda" else ""))
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for case in cases(args.small):
        if prefixes and not any(case["name"].startswith(p) for p in prefixes):
            continue
        for row in bench_case(case, args.repeats, rng, args.torch_device,
                              args.settle_calls):
            print("| " + " | ".join(row) + " |", flush=True)
    print(f"load average after {os.getloadavg()}")


if __name__ == "__main__":
    main()
