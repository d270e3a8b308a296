"""The training loop: `train_and_evaluate(config, workdir)`.

The workdir receives config.json, metrics.jsonl (one JSON object per logged train step and
per evaluation), tensorboard/ (the same scalars), checkpoints/<step>/ (orbax: every
`checkpoint_every_steps` and after the last step, newest `keep_checkpoints` kept),
curves.png (train loss and test accuracy against step from metrics.jsonl; config.curves)
and, last, summary.json. "epoch" means the same everywhere (metrics.jsonl, the console):
epochs completed, step / steps_per_epoch, to 3 decimals. images_per_s counts train-phase
time only (the steps and their data); evaluations (eval_s in their record) and checkpoint
saves are timed apart.
Restarting with the same workdir resumes from the newest checkpoint: the
state (step, params, BatchNorm statistics, the model's RNG streams, optimizer state) and
the input iterator's state (Grain, `poolnets.data.train_batches`: the batch order is a
function of (seed, epoch)) are restored; augmentation draws from fold_in(key, step) and
dropout and random pools from the restored RNG streams, so the resumed run equals an
uninterrupted one.
Models are Flax NNX modules (`poolnets.models.nnx`), trained through `nnx.split` state
(`poolnets.training.state`).
"""

from __future__ import annotations

import functools
import itertools
import platform
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from poolnets.data import default_data_dir, eval_batches, train_batches
from poolnets.training import artifacts, observe
from poolnets.training.config import ConfigError, Plan, check_config, model_options
from poolnets.training.optim import make_recipe
from poolnets.training.setup import apply_transfer, build_preprocess, init_from, load_data
from poolnets.training.state import Build, TrainState, count_params, create_train_state
from poolnets.training.steps import compile_steps, make_mesh, put_batch, put_replicated

# Keys of summary.json that measure time; everything else is a function of config + seed.
TIMING_KEYS = ("train_time_s", "timing")


class TrainingDiverged(RuntimeError):
    """The loss or the gradients became NaN/Inf; the message names the first such step."""


def create_model(config: Any, num_classes: int, image_shape: tuple[int, ...]) -> Build:
    """The build (`rngs -> nnx.Module`) of `poolnets.models.nnx.create(config.model.name,
    ...)` with the config's overrides, for the data's `image_shape = (*spatial, C)`: an NNX
    model is built for its input channels and size (resnet20 on 1-channel Fashion-MNIST,
    not its published 3 channels)."""
    from poolnets.models import nnx as zoo

    return functools.partial(zoo.create, config.model.name, num_classes=num_classes,
                             in_channels=image_shape[-1], input_size=tuple(image_shape[:-1]),
                             dtype=jnp.dtype(config.dtype), **model_options(config))


def _name_of(model: Any) -> str:
    """A model's name for the summary: a build's class or function, a module's class."""
    model = model.func if isinstance(model, functools.partial) else model
    return model.__name__ if isinstance(model, type) else type(model).__name__ if isinstance(
        model, nnx.Module) else getattr(model, "__name__", type(model).__name__)


def _shard() -> tuple[int, int]:
    return jax.process_index(), jax.process_count()


def evaluate(eval_fn: Any, state: TrainState, mesh: Any, data: Any, batch_size: int) -> dict:
    """Test loss (mean cross-entropy) and accuracy over every example of `data`, once each."""
    sums = [
        eval_fn(state, *put_batch(mesh, images, labels, mask))
        for images, labels, mask in eval_batches(data, batch_size, shard=_shard())
    ]
    totals = {k: float(np.sum([s[k] for s in jax.device_get(sums)])) for k in sums[0]}
    return {
        "test_loss": totals["loss_sum"] / totals["count"],
        "test_accuracy": totals["correct"] / totals["count"],
    }


def train_and_evaluate(
    config: Any, workdir: str, *, model: Any = None, show_progress: bool = True
) -> dict[str, Any]:
    """Trains `config.model` (or the given `model`) on `config.dataset`; returns the summary.

    model: None (config.model), an NNX build `rngs -> nnx.Module` (initialised from
    config.seed) or an `nnx.Module` (trained from its own weights and RNG state); it is
    called as `model(x, train=...)`.

    Raises ConfigError for a config that cannot work and CheckpointError for a checkpoint in
    workdir that cannot be resumed, both before anything is written to workdir;
    TrainingDiverged when the loss or gradients stop being finite (the newest checkpoint
    then holds the last good state); WriteError when a workdir file cannot be written (a full
    disk). A newest checkpoint that does not restore is skipped for the one before it (one
    line on stderr says which and why).
    """
    t_start = time.perf_counter()
    plan: Plan = check_config(config, num_devices=jax.device_count(),
                              check_model_name=model is None)
    try:
        artifacts.check_workdir_creatable(workdir)  # fail fast; created only once all is valid
    except OSError as e:
        raise ConfigError(f"workdir {workdir!r} is not writable: {e.strerror or e}") from None
    train, test = load_data(config, plan, config.data_dir or default_data_dir())
    recipe = make_recipe(config, len(train))  # ConfigError for a batch larger than the data
    steps_per_epoch, total_steps, num_epochs = (
        recipe.steps_per_epoch, recipe.total_steps, recipe.num_epochs)
    schedule, tx = recipe.schedule, recipe.tx
    model_name = config.model.name if model is None else _name_of(model)
    init_key, step_key = jax.random.split(jax.random.key(config.seed))
    mesh = make_mesh()
    try:  # models check their arguments when built and when first called
        build = (create_model(config, plan.num_classes, plan.image_shape) if model is None
                 else model)
        build, tx = apply_transfer(config, build, tx)
        graphdef, state = create_train_state(build, tx, init_key, plan.image_shape)
    except ValueError as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"config.model={config.model.name!r}: {e}") from None
    state = init_from(config, state)  # a resumed run then replaces it all from its checkpoint
    state = put_replicated(mesh, state)
    config_dict = config.to_dict()
    checkpoints = artifacts.Checkpoints(workdir, keep=config.keep_checkpoints)
    state, resume_step = checkpoints.restore_latest(state, config_dict)
    if resume_step is not None:
        data_state = checkpoints.data_state(resume_step, config.data.workers)
    try:
        workdir = artifacts.check_workdir(workdir)
    except OSError as e:
        raise ConfigError(f"workdir {workdir!r} is not writable: {e.strerror or e}") from None
    lead = jax.process_index() == 0
    if resume_step is None and lead:
        checkpoints.write_config(config_dict)
    if lead:
        for note in checkpoints.set_aside_skipped():
            print(f"poolnets: {note}; resuming from step {resume_step}", file=sys.stderr)
    step_key = put_replicated(mesh, step_key)
    preprocess_spec = build_preprocess(config, plan)
    stored = plan.spec.stored_shape or plan.image_shape
    t_compile = time.perf_counter()
    train_fn, eval_fn = compile_steps(
        mesh, state, (config.batch_size, *stored), (config.eval_batch_size, *stored),
        image_dtype=jnp.dtype(plan.spec.stored_dtype),
        model=graphdef, tx=tx, num_classes=plan.num_classes,
        label_smoothing=config.label_smoothing, preprocess_spec=preprocess_spec,
    )
    compile_s = time.perf_counter() - t_compile

    step = resume_step or 0
    writer = artifacts.MetricsWriter(workdir, resume_step) if lead else None
    scalars = observe.Scalars(workdir, enabled=lead and config.tensorboard,
                              resume_step=resume_step)
    profile = observe.ProfileWindow(workdir, config.profile_steps, step + 1)
    if resume_step is not None and writer:
        writer.write({"step": step, "resumed_from_step": step})
    bar = tqdm(total=total_steps, initial=step, unit="step", dynamic_ncols=True,
               disable=not (show_progress and lead))
    eval_s, save_s, pending = 0.0, 0.0, []
    t_log = t_train = time.perf_counter()
    evals: list[dict] = []

    def record(entry: dict) -> None:
        if writer:
            writer.write(entry)
        scalars.write(entry)

    def flush() -> None:
        """Logs the steps since the last log; stops at the first non-finite one."""
        nonlocal pending, t_log
        logged = jax.device_get(pending)
        train_s = time.perf_counter() - t_log  # the steps' time, not this logging's
        first = step - len(logged) + 1
        for i, m in enumerate(logged):
            if not m["finite"]:
                raise TrainingDiverged(
                    f"loss or gradients became NaN/Inf at step {first + i} "
                    f"(loss {float(m['loss'])}, grad_norm {float(m['grad_norm'])}); "
                    f"{checkpoints.last_good()}")
        entry = {
            "step": step,
            "epoch": round(step / steps_per_epoch, 3),
            "train_loss": float(np.mean([m["loss"] for m in logged])),
            "train_accuracy": float(np.mean([m["accuracy"] for m in logged])),
            "grad_norm": float(np.mean([m["grad_norm"] for m in logged])),
            "learning_rate": float(schedule(step - 1)),
            "images_per_s": round(len(logged) * config.batch_size / train_s, 1),
        }
        record(entry)
        bar.set_postfix(loss=f"{entry['train_loss']:.4f}", acc=f"{entry['train_accuracy']:.3f}",
                        img_s=f"{entry['images_per_s']:.0f}")
        bar.update(len(logged))
        pending, t_log = [], time.perf_counter()

    def save(at: int) -> None:
        """Checkpoint `at`; its time is not train-phase time."""
        nonlocal t_log, save_s
        t_save = time.perf_counter()
        checkpoints.save(at, state, {"workers": config.data.workers,
                                     "iterator": batches.get_state()})
        t_log += time.perf_counter() - t_save
        save_s += time.perf_counter() - t_save

    batches = iter(train_batches(
        train, config.batch_size, seed=config.seed, num_steps=total_steps, shard=_shard(),
        workers=config.data.workers, place=functools.partial(put_batch, mesh),
        prefetch=config.prefetch))
    if resume_step is not None:
        batches.set_state(data_state)
    try:
        for epoch in range(min(step // steps_per_epoch, num_epochs - 1), num_epochs):
            end = min(total_steps, (epoch + 1) * steps_per_epoch)
            for images, labels in itertools.islice(batches, end - step):
                profile.before_step(step + 1, state)
                state, metrics = train_fn(state, images, labels, step_key)
                pending.append(metrics)
                step += 1
                save_now = step % config.checkpoint_every_steps == 0 and step != end
                if step % config.log_every == 0 or save_now or step == end:
                    flush()
                if save_now:
                    save(step)
            if pending:
                flush()
            jax.block_until_ready(state)  # so eval_s does not include queued train steps
            t_eval = time.perf_counter()
            result = {"step": step, "epoch": round(step / steps_per_epoch, 3),
                      **evaluate(eval_fn, state, mesh, test, config.eval_batch_size)}
            result["eval_s"] = round(time.perf_counter() - t_eval, 3)
            eval_s += result["eval_s"]
            record(result)
            evals.append(result)
            if lead and show_progress:
                bar.write(f"epoch {result['epoch']:g}  step {step}  "
                          f"test_loss {result['test_loss']:.4f}  "
                          f"test_accuracy {result['test_accuracy']:.4f}  "
                          f"eval_s {result['eval_s']:.1f}")
            t_log += time.perf_counter() - t_eval
            # saved after the evaluation, so a checkpoint at step s implies all records <= s
            if step % config.checkpoint_every_steps == 0 or step == total_steps:
                save(step)
    finally:
        batches.close()  # stops Grain's prefetch thread and worker processes
        profile.close(state)
        bar.close()
        scalars.close()
        checkpoints.close()
        if writer:
            writer.close()
    train_s = time.perf_counter() - t_train

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
        "num_processes": jax.process_count(),
        "platform": f"{jax.default_backend()} ({platform.machine()})",
        "jax_version": jax.__version__,
        "config": config_dict,
        "train_time_s": round(time.perf_counter() - t_start, 3),
        "timing": {
            "compile_s": round(compile_s, 3),
            "train_loop_s": round(train_s - eval_s - save_s, 3),
            "eval_s": round(eval_s, 3),
            "checkpoint_s": round(save_s, 3),
            "images_per_s": round((step - (resume_step or 0)) * config.batch_size
                                  / max(train_s - eval_s - save_s, 1e-9), 1),
            "resumed_from_step": resume_step,
        },
    }
    if lead and config.curves:
        observe.write_curves(workdir)
    if lead:
        artifacts.write_json_atomic(f"{workdir}/{artifacts.SUMMARY_FILE}", summary)
    return summary
