"""Runs the report's variants within the config's time budget, with a progress bar.

`config.workers` > 1 trains that many variants at once, each in its own spawned process
(JAX is not fork-safe); results are identical to a one-process run because every variant
depends only on its seeds. Workers report their steps through a queue to the bar.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from queue import Empty
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from poolnets.data import Split, get_spec, load_split
from poolnets.data.augment import Preprocess

PROBE_KEY = 1234


def model_input(images: np.ndarray, spec: Preprocess) -> np.ndarray:
    """Stored images -> float32 in the stored value range scaled to [0, 1] and padded: the
    deterministic part of the dataset's preprocessing (no augmentation, no normalisation,
    so the probe corruptions see [0, 1] images)."""
    x = np.asarray(images, np.float32) * spec.scale
    if spec.pad:
        p = spec.pad
        x = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    return x


def normalise(x: np.ndarray, spec: Preprocess) -> np.ndarray:
    return ((x - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
            ).astype(np.float32)


class Context:
    """Datasets and probe sets, read once per process and per dataset name."""

    def __init__(self, config: Any):
        self.config = config
        self._splits: dict[str, tuple] = {}
        self._ready: dict[str, tuple] = {}

    def splits(self, name: str) -> tuple[Split, Split, Any]:
        """(train, test) as [0, 1] model input, and the dataset's spec."""
        if name not in self._splits:
            spec = get_spec(name)
            parts = [self._subset(name, s, load_split(name, s, self.config.data_dir))
                     for s in ("train", "test")]
            self._splits[name] = (*[Split(model_input(p.images, spec.preprocess),
                                          np.asarray(p.labels)) for p in parts], spec)
        return self._splits[name]

    def _subset(self, name: str, split: str, part: Split) -> Split:
        """The first config.<split>_examples of config.dataset's split (all if None)."""
        field = f"{split}_examples"
        n = self.config.get(field)
        if name != self.config.dataset or n is None:
            return part
        if n > len(part.labels):
            from poolnets.training.config import ConfigError

            raise ConfigError(f"config.{field}={n} is more than the {len(part.labels)} "
                              f"{split} examples of {name!r}; choices: 1..{len(part.labels)}")
        return Split(part.images[:n], part.labels[:n])

    def data(self, name: str) -> tuple[dict, Any]:
        """({"train", "test", "num_classes"} normalised, probe set of the test images)."""
        if name not in self._ready:
            import jax

            from poolnets.report.sweep import Probe, build_probe

            train, test, spec = self.splits(name)
            probe = build_probe(test.images, self.config, jax.random.key(PROBE_KEY))
            pp = spec.preprocess
            self._ready[name] = (
                {"train": Split(normalise(train.images, pp), train.labels),
                 "test": Split(normalise(test.images, pp), test.labels),
                 "num_classes": spec.num_classes},
                Probe(normalise(probe.images, pp), probe.slices))
        return self._ready[name]


def variant_steps(variant: dict, config: Any, ctx: Context) -> int:
    from poolnets.report.sweep import train_config
    from poolnets.training.optim import count_steps

    train = ctx.splits(variant.get("dataset", config.dataset))[0]
    return count_steps(train_config(variant, config), len(train))[1]


def run_variant(variant: dict, config: Any, ctx: Context, on_step: Any) -> tuple[dict, dict]:
    """(numbers, arrays) of one variant."""
    from poolnets.report.sweep import build, measure, train_config

    data, probe = ctx.data(variant.get("dataset", config.dataset))
    model, label, layers = build(variant, config, data["num_classes"],
                                 tuple(data["train"].images.shape[1:]))
    return measure(model, label, data, probe, config, layers, on_step,
                   train_config(variant, config))


_WORKER: dict[str, Any] = {}


def _worker_init(config_dict: dict, queue: Any) -> None:
    import ml_collections

    config = ml_collections.ConfigDict(config_dict)
    _WORKER.update(config=config, ctx=Context(config), queue=queue)


def _worker_run(index: int, variant: dict) -> tuple[int, dict, dict]:
    queue, pending = _WORKER["queue"], [0]

    def on_step(n: int) -> None:
        pending[0] += n
        if pending[0] >= 10:
            queue.put(pending[0])
            pending[0] = 0

    numbers, arrays = run_variant(variant, _WORKER["config"], _WORKER["ctx"], on_step)
    if pending[0]:
        queue.put(pending[0])
    return index, numbers, arrays


def run_sweep(config: Any, *, show_progress: bool = True) -> tuple[list, dict, list]:
    """(numbers per variant in run order, arrays per variant name, names not run for lack
    of time)."""
    from poolnets.report.sweep import build, variants

    ctx = Context(config)
    todo = variants(config)
    steps = [variant_steps(v, config, ctx) for v in todo]
    names = []
    for v in todo:
        train, _, spec = ctx.splits(v.get("dataset", config.dataset))
        names.append(build(v, config, spec.num_classes, train.images.shape[1:])[1]["name"])
    bar = tqdm(total=sum(steps), unit="step", disable=not show_progress, dynamic_ncols=True)
    done: dict[int, tuple[dict, dict]] = {}
    skipped: list[str] = []
    t0 = time.perf_counter()

    def over_budget() -> bool:
        return time.perf_counter() - t0 > 60 * config.max_minutes

    def report(index: int, numbers: dict, arrays: dict) -> None:
        done[index] = (numbers, arrays)
        acc = numbers["test_accuracy"]
        bar.write(f"{numbers['name']:>28s}  test {acc['mean']:.4f} +- {acc['std']:.4f}  "
                  f"consistency {numbers['shift_consistency']['mean']:.3f}  "
                  f"{numbers['wall_s']:.0f} s")

    try:
        if config.workers <= 1:
            for i, v in enumerate(todo):
                if over_budget():
                    skipped.append(names[i])
                    bar.update(steps[i])
                    continue
                bar.set_description(names[i])
                report(i, *run_variant(v, config, ctx, bar.update))
        else:
            _run_parallel(config, todo, steps, names, bar, over_budget, report, skipped)
    finally:
        bar.close()
    results = [done[i][0] for i in sorted(done)]
    arrays = {done[i][0]["name"]: done[i][1] for i in sorted(done)}
    return results, arrays, skipped


def _run_parallel(config: Any, todo: list, steps: list, names: list, bar: Any,
                  over_budget: Any, report: Any, skipped: list) -> None:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    with ProcessPoolExecutor(config.workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(config.to_dict(), queue)) as pool:
        queued = iter(range(len(todo)))
        running: dict[Any, int] = {}
        exhausted, shown = False, ""
        while running or not exhausted:
            while not exhausted and len(running) < config.workers:
                i = next(queued, None)
                if i is None:
                    exhausted = True
                elif over_budget():
                    skipped.append(names[i])
                    bar.update(steps[i])
                else:
                    running[pool.submit(_worker_run, i, todo[i])] = i
            if not running:
                break
            finished, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
            try:
                while True:
                    bar.update(queue.get_nowait())
            except Empty:
                pass
            description = ", ".join(names[i] for i in running.values())
            if description != shown:
                bar.set_description(shown := description)
            for future in finished:
                running.pop(future)
                report(*future.result())
