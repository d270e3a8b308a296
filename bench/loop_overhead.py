"""Loop overhead: train-phase time per step of the real training loop against the bare
compiled step, paired, in one process. A benchmark, not a test.

    python bench/loop_overhead.py                       # default config and resnet20, 5 pairs
    python bench/loop_overhead.py --cases default --repeats 9
    python bench/loop_overhead.py --first-line          # also: time to train.py's first line

Contenders, alternated (loop, bare, loop, bare, ...), each pair on the same compiled step:
- loop: `poolnets.training.train_and_evaluate` as `train.py` runs it (progress bar on, its
  output captured, workers=0). Its train phase is timed here, not by the loop's own
  accounting: from the entry of the first train-step call to the start of the last
  evaluation (after the state is ready), less the time inside evaluations and checkpoint
  saves (each timed after the state they read is ready, as the loop itself waits for it).
- bare: the same compiled step called back to back from the same initial state on the same
  batches, captured from the loop's own calls and placed on the device beforehand (on CPU
  the loop passes host arrays, which the step's dispatch transfers), then one wait.
The compiled step is run once before the loop starts (on zeros), so neither contender pays
its executable's one-off first-run work. Per case: median ms/step of each, the median of
the per-pair ratios loop/bare, and the load average before and after (the machine may be
shared: pairs cancel slow drifts, not bursts), in wall time and in CPU time of the process
(all threads: XLA's, the input pipeline's, Python's). On a loaded machine the CPU time is
the steadier of the two; it misses the time the device waits for the host, which the wall
time counts.

Cases: "default" is configs/default.py (LeNet-5 on digits, 660 steps of 64, an evaluation
every 22 steps); "resnet20" is a CPU-sized ResNet-20: synthetic 32x32x3 data, batch 32,
one epoch of 30 steps, one evaluation at its end.

--first-line: seconds from starting `python train.py --workdir TMP` to its first line of
output (stdout or stderr), median of 3 runs (the process is killed at that line).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from poolnets.training import artifacts, loop
from poolnets.training.defaults import synthetic_config
from poolnets.training.steps import put_batch, put_replicated

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def now() -> np.ndarray:
    """(wall seconds, CPU seconds of this process, all its threads)."""
    return np.array([time.perf_counter(), time.process_time()])


def default_config():
    spec = importlib.util.spec_from_file_location("default_config",
                                                  os.path.join(ROOT, "configs", "default.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def resnet20_config():
    config = synthetic_config("resnet20", (32, 32, 3), batch_size=32, num_steps=30)
    config.synthetic.num_train = 30 * 32  # one epoch: a single evaluation, at the end
    return config


CASES = {"default": default_config, "resnet20": resnet20_config}


class Probe:
    """Wraps what the loop calls (the compiled train step, evaluations, checkpoint saves) to
    time its train phase from outside, and captures the step's inputs for the bare run."""

    def __init__(self):
        self.first_call = self.last_eval = None
        self.excluded = np.zeros(2)  # evaluations and saves, wall and CPU seconds
        self.batches, self.key, self.initial, self.train_fn, self.mesh = [], None, None, None, None

    def compile_steps(self, original, mesh, state, batch_shape, *args, **kwargs):
        train_fn, eval_fn = original(mesh, state, batch_shape, *args, **kwargs)
        self.initial = jax.tree.map(jnp.copy, state)  # the loop donates `state`
        self.train_fn = train_fn
        # The executable's first run does one-off work; both contenders get a warm one.
        images = np.zeros(batch_shape, kwargs.get("image_dtype", np.float32))
        labels = np.zeros(len(images), np.int32)
        jax.block_until_ready(train_fn(jax.tree.map(jnp.copy, state),
                                       *put_batch(mesh, images, labels),
                                       put_replicated(mesh, jax.random.key(0))))

        def train(state, images, labels, key):
            if self.first_call is None:
                self.first_call, self.key = now(), key
            self.batches.append((images, labels))
            return train_fn(state, images, labels, key)

        self.mesh = mesh

        return train, eval_fn

    def timed(self, original, state_arg):
        def wrapper(*args, **kwargs):
            jax.block_until_ready(args[state_arg])  # queued train steps are train time
            t = now()
            try:
                return original(*args, **kwargs)
            finally:
                self.excluded += now() - t

        return wrapper

    def evaluate(self, original):
        timed = self.timed(original, 1)

        def wrapper(*args, **kwargs):
            jax.block_until_ready(args[1])
            self.last_eval, self.excluded_at_last_eval = now(), self.excluded.copy()
            return timed(*args, **kwargs)

        return wrapper

    def train_seconds(self) -> np.ndarray:
        return self.last_eval - self.first_call - self.excluded_at_last_eval


def run_loop(config) -> tuple[np.ndarray, Probe]:
    """The loop's train-phase (wall, CPU) seconds per step, and the probe holding its step
    and batches."""
    probe = Probe()
    patches = [
        (loop, "compile_steps", functools.partial(probe.compile_steps, loop.compile_steps)),
        (loop, "evaluate", probe.evaluate(loop.evaluate)),
        (artifacts.Checkpoints, "save", probe.timed(artifacts.Checkpoints.save, 2)),
    ]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    with tempfile.TemporaryDirectory() as workdir, contextlib.ExitStack() as stack:
        for owner, name, new in patches:
            setattr(owner, name, new)
        stack.callback(lambda: [setattr(o, n, v) for o, n, v in saved])
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            loop.train_and_evaluate(config, workdir, show_progress=True)
    return probe.train_seconds() / len(probe.batches), probe


def run_bare(probe: Probe) -> np.ndarray:
    """(wall, CPU) seconds per step of the compiled step alone on the loop's batches and
    initial state."""
    batches = jax.block_until_ready([put_batch(probe.mesh, *b) for b in probe.batches])
    state = jax.block_until_ready(jax.tree.map(jnp.copy, probe.initial))
    t = now()
    for images, labels in batches:
        state, metrics = probe.train_fn(state, images, labels, probe.key)
    jax.block_until_ready((state, metrics))
    return (now() - t) / len(probe.batches)


def measure(name: str, repeats: int) -> dict:
    config = CASES[name]()
    load_before = os.getloadavg()
    pairs = []
    for _ in range(repeats):
        loop_s, probe = run_loop(config)
        pairs.append((loop_s, run_bare(probe)))
    load_after = os.getloadavg()
    loops, bares = (np.array(x) for x in zip(*pairs, strict=True))  # (repeats, wall/CPU)
    ratios = loops / bares
    return {"case": name, "steps": len(probe.batches), "batch": config.batch_size,
            "loop_ms": 1e3 * np.median(loops, 0), "bare_ms": 1e3 * np.median(bares, 0),
            "ratio": np.median(ratios, 0), "ratios": ratios, "load": (load_before, load_after)}


def first_line_seconds(runs: int = 3) -> list[float]:
    """Seconds from starting `python train.py` to its first byte of output, per run."""
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as workdir:
            t = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, os.path.join(ROOT, "train.py"), "--workdir", workdir],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
            os.read(proc.stdout.fileno(), 1)
            times.append(time.perf_counter() - t)
            proc.kill()
            proc.wait()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--repeats", type=int, default=5, help="loop/bare pairs per case")
    parser.add_argument("--first-line", action="store_true",
                        help="also time train.py's first line of output")
    args = parser.parse_args()
    print(f"# {jax.device_count()} x {jax.devices()[0].device_kind} "
          f"({jax.default_backend()}), jax {jax.__version__}, {os.cpu_count()} CPUs")
    print("| case | clock | steps x batch | loop ms/step | bare ms/step | loop/bare (median "
          "of pairs) | pair ratios | load avg before -> after |")
    print("|---|---|---|---:|---:|---:|---|---|")
    for name in args.cases:
        r = measure(name, args.repeats)
        load = " -> ".join("/".join(f"{x:.2f}" for x in avg) for avg in r["load"])
        for i, clock in enumerate(("wall", "CPU")):
            ratios = " ".join(f"{x:.3f}" for x in r["ratios"][:, i])
            print(f"| {r['case']} | {clock} | {r['steps']} x {r['batch']} | "
                  f"{r['loop_ms'][i]:.2f} | {r['bare_ms'][i]:.2f} | {r['ratio'][i]:.3f} | "
                  f"{ratios} | {load} |", flush=True)
    if args.first_line:
        load = os.getloadavg()
        times = first_line_seconds()
        print(f"first line of `python train.py`: median {statistics.median(times):.2f} s "
              f"({', '.join(f'{t:.2f}' for t in times)}), load avg "
              f"{'/'.join(f'{x:.2f}' for x in load)}")


if __name__ == "__main__":
    main()
