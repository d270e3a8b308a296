"""The training loop: `train_and_evaluate(config, workdir)`.

Per run the workdir receives metrics.jsonl (one JSON object per logged train step and per
evaluation), checkpoint/ (orbax, the final TrainState) and, last, summary.json.
"""

from __future__ import annotations

import math
import platform
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from poolnets.data import default_data_dir, epoch_batches, eval_batches, load_split
from poolnets.training import artifacts
from poolnets.training.config import ConfigError, Plan, check_config
from poolnets.training.optim import make_optimizer, make_schedule
from poolnets.training.state import TrainState, count_params, create_train_state
from poolnets.training.steps import compile_steps, make_mesh, put_batch, put_replicated

# Keys of summary.json that measure time; everything else is a function of config + seed.
TIMING_KEYS = ("train_time_s", "timing")


def create_model(config: Any, num_classes: int) -> nn.Module:
    """`poolnets.models.create(config.model, ...)` with the config's overrides."""
    from poolnets import models

    overrides = {k: config[k] for k in ("downsample", "head") if config[k] is not None}
    return models.create(
        config.model, num_classes=num_classes, dtype=jnp.dtype(config.dtype), **overrides
    )


def evaluate(eval_fn: Any, state: TrainState, mesh: Any, data: Any, batch_size: int) -> dict:
    """Test loss (mean cross-entropy) and accuracy over every example of `data`."""
    sums = [
        eval_fn(state, *put_batch(mesh, images, labels, mask))
        for images, labels, mask in eval_batches(data, batch_size)
    ]
    totals = {k: float(np.sum([s[k] for s in jax.device_get(sums)])) for k in sums[0]}
    return {
        "test_loss": totals["loss_sum"] / totals["count"],
        "test_accuracy": totals["correct"] / totals["count"],
    }


def train_and_evaluate(
    config: Any, workdir: str, *, model: nn.Module | None = None, show_progress: bool = True
) -> dict[str, Any]:
    """Trains `config.model` (or the given `model`) on `config.dataset`; returns the summary.

    Raises ConfigError for a config that cannot work, before anything is written to workdir.
    """
    t_start = time.perf_counter()
    plan: Plan = check_config(config, num_devices=jax.device_count(), check_model_name=not model)
    try:
        artifacts.check_workdir_creatable(workdir)  # fail fast; created only once all is valid
    except OSError as e:
        raise ConfigError(f"workdir {workdir!r} is not writable: {e.strerror or e}") from None
    data_dir = config.data_dir or default_data_dir()
    train = load_split(config.dataset, "train", data_dir)
    test = load_split(config.dataset, "test", data_dir)
    steps_per_epoch = len(train) // config.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(
            f"config.batch_size={config.batch_size} exceeds the {len(train)} training images "
            f"of {config.dataset!r}; choices: 1..{len(train)}"
        )
    total_steps = config.num_steps or config.num_epochs * steps_per_epoch
    model_name = config.model if model is None else type(model).__name__

    schedule = make_schedule(
        config.schedule, config.learning_rate, total_steps,
        round(config.warmup_epochs * steps_per_epoch),
    )
    tx = make_optimizer(
        config.optimizer, schedule, momentum=config.momentum, weight_decay=config.weight_decay
    )
    init_key, step_key = jax.random.split(jax.random.key(config.seed))
    mesh = make_mesh()
    try:  # models check their arguments when built and when first called
        model = model or create_model(config, plan.num_classes)
        state = create_train_state(model, tx, init_key, plan.image_shape)
    except ValueError as e:
        raise ConfigError(f"config.model={config.model!r}: {e}") from None
    try:
        workdir = artifacts.check_workdir(workdir)
    except OSError as e:
        raise ConfigError(f"workdir {workdir!r} is not writable: {e.strerror or e}") from None
    state = put_replicated(mesh, state)
    step_key = put_replicated(mesh, step_key)
    t_compile = time.perf_counter()
    train_fn, eval_fn = compile_steps(
        mesh, state, (config.batch_size, *plan.image_shape),
        (config.eval_batch_size, *plan.image_shape),
        model=model, tx=tx, num_classes=plan.num_classes,
        label_smoothing=config.label_smoothing, max_shift=config.augment.max_shift,
    )
    compile_s = time.perf_counter() - t_compile

    writer = artifacts.MetricsWriter(workdir)
    bar = tqdm(total=total_steps, unit="step", disable=not show_progress, dynamic_ncols=True)
    step, eval_s, pending = 0, 0.0, []
    t_log = t_train = time.perf_counter()
    evals: list[dict] = []
    try:
        for epoch in range(math.ceil(total_steps / steps_per_epoch)):
            for images, labels in epoch_batches(
                train, config.batch_size, seed=config.seed, epoch=epoch
            ):
                if step == total_steps:
                    break
                state, metrics = train_fn(state, *put_batch(mesh, images, labels), step_key)
                pending.append(metrics)
                step += 1
                if step % config.log_every == 0 or step == total_steps:
                    logged = jax.device_get(pending)
                    now = time.perf_counter()
                    record = {
                        "step": step,
                        "epoch": round(step / steps_per_epoch, 3),
                        "train_loss": float(np.mean([m["loss"] for m in logged])),
                        "train_accuracy": float(np.mean([m["accuracy"] for m in logged])),
                        "learning_rate": float(schedule(step - 1)),
                        "images_per_s": round(len(logged) * config.batch_size / (now - t_log), 1),
                    }
                    writer.write(record)
                    bar.set_postfix(
                        loss=f"{record['train_loss']:.4f}",
                        acc=f"{record['train_accuracy']:.3f}",
                        img_s=f"{record['images_per_s']:.0f}",
                    )
                    bar.update(len(logged))
                    pending, t_log = [], now
            jax.block_until_ready(state)  # so eval_s does not include queued train steps
            t_eval = time.perf_counter()
            result = {"step": step, "epoch": round(step / steps_per_epoch, 3),
                      **evaluate(eval_fn, state, mesh, test, config.eval_batch_size)}
            eval_s += time.perf_counter() - t_eval
            writer.write(result)
            evals.append(result)
            bar.write(
                f"epoch {epoch + 1:3d}  step {step:6d}  test_loss {result['test_loss']:.4f}  "
                f"test_accuracy {result['test_accuracy']:.4f}"
            )
            t_log += time.perf_counter() - t_eval
    finally:
        bar.close()
        writer.close()
    train_s = time.perf_counter() - t_train

    artifacts.save_checkpoint(workdir, jax.device_get(state))
    final = evals[-1]
    summary = {
        "model": model_name,
        "dataset": config.dataset,
        "test_accuracy": final["test_accuracy"],
        "test_loss": final["test_loss"],
        "steps": step,
        "epochs": final["epoch"],
        "params": count_params(state.params),
        "batch_size": config.batch_size,
        "seed": config.seed,
        "num_devices": plan.num_devices,
        "platform": f"{jax.default_backend()} ({platform.machine()})",
        "jax_version": jax.__version__,
        "config": config.to_dict(),
        "train_time_s": round(time.perf_counter() - t_start, 3),
        "timing": {
            "compile_s": round(compile_s, 3),
            "train_loop_s": round(train_s - eval_s, 3),
            "eval_s": round(eval_s, 3),
            "images_per_s": round(step * config.batch_size / max(train_s - eval_s, 1e-9), 1),
        },
    }
    artifacts.write_json_atomic(f"{workdir}/{artifacts.SUMMARY_FILE}", summary)
    return summary
