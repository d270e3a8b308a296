"""Runs the report's variants in order, within the config's time budget."""

from __future__ import annotations

import time
from typing import Any

import jax
from tqdm.auto import tqdm

from poolnets.data import get_spec, load_split
from poolnets.report.sweep import build, build_probe, measure, variants


def run_sweep(config: Any, *, show_progress: bool = True) -> tuple[list, dict, list]:
    """(numbers per variant, arrays per variant name, names not run for lack of time)."""
    spec = get_spec(config.dataset)
    train = load_split(config.dataset, "train", config.data_dir)
    test = load_split(config.dataset, "test", config.data_dir)
    data = {"train": train, "test": test, "num_classes": spec.num_classes}
    probe = build_probe(test.images, config, jax.random.key(1234))
    todo = variants(config)
    steps = config.num_steps or config.num_epochs * (len(train) // config.batch_size)
    bar = tqdm(total=len(todo) * steps, unit="step", disable=not show_progress,
               dynamic_ncols=True)
    results, arrays, skipped = [], {}, []
    t0 = time.perf_counter()
    try:
        for variant in todo:
            model, label, layers = build(variant, config, spec.num_classes)
            if time.perf_counter() - t0 > 60 * config.max_minutes:
                skipped.append(label["name"])
                bar.update(steps)
                continue
            bar.set_description(label["name"])
            numbers, arr = measure(model, label, data, probe, config, layers, bar.update)
            results.append(numbers)
            arrays[label["name"]] = arr
            acc = numbers["test_accuracy"]
            bar.write(f"{label['name']:>24s}  test {acc['mean']:.4f} +- {acc['std']:.4f}  "
                      f"consistency {numbers['shift_consistency']['mean']:.3f}  "
                      f"{numbers['wall_s']:.0f} s")
    finally:
        bar.close()
    return results, arrays, skipped
