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
(`poolnets.training.state`). The loop body only steps; logging, evaluation, checkpoints and
the profiler trace are the hooks of `poolnets.training.hooks`, called after every step.
"""

from __future__ import annotations

import dataclasses
import functools
import platform
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from poolnets.data import default_data_dir, eval_batches, train_batches
from poolnets.training import artifacts, hooks, observe
from poolnets.training.config import ConfigError, Plan, check_config, model_options
from poolnets.training.hooks import TrainingDiverged
from poolnets.training.optim import make_recipe, schedule_table
from poolnets.training.setup import apply_transfer, build_preprocess, init_from, load_data
from poolnets.training.state import Build, TrainState, count_params, create_train_state
from poolnets.training.steps import compile_steps, make_mesh, put_batch, put_replicated

__all__ = ["TIMING_KEYS", "TrainingDiverged", "create_model", "evaluate", "train_and_evaluate"]

# Keys of summary.json that measure time; everything else is a function of config + seed.
TIMING_KEYS = ("train_time_s", "timing")


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


def input_prefetch(config: Any) -> int:
    """Batches placed on the devices ahead of the step: config.prefetch, or when it is None,
    2 on accelerators and 0 on CPU, whose "device" memory is the host's: a placing thread
    would only take cores from XLA there."""
    if config.prefetch is not None:
        return config.prefetch
    return 0 if jax.default_backend() == "cpu" else 2


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


@dataclasses.dataclass
class _Run:
    """A run ready to train: checked config, data, compiled steps, the (restored) state."""

    config: Any
    workdir: str
    plan: Plan
    recipe: Any
    train: Any
    test: Any
    mesh: Any
    state: TrainState
    step_key: jax.Array
    train_fn: Any
    eval_fn: Any
    checkpoints: artifacts.Checkpoints
    resume_step: int | None
    data_state: Any
    model_name: str
    config_dict: dict
    compile_s: float


def _prepare(config: Any, workdir: str, model: Any, console: observe.Console) -> _Run:
    """Everything before the first step, every check before anything is written."""
    plan: Plan = check_config(config, num_devices=jax.device_count(),
                              check_model_name=model is None)
    try:
        artifacts.check_workdir_creatable(workdir)  # fail fast; created only once all is valid
    except OSError as e:
        raise ConfigError(f"workdir {workdir!r} is not writable: {e.strerror or e}") from None
    console.say(f"poolnets: preparing data: {config.dataset}")
    train, test = load_data(config, plan, config.data_dir or default_data_dir())
    recipe = make_recipe(config, len(train))  # ConfigError for a batch larger than the data
    model_name = config.model.name if model is None else _name_of(model)
    init_key, step_key = jax.random.split(jax.random.key(config.seed))
    mesh = make_mesh()
    try:  # models check their arguments when built and when first called
        build = (create_model(config, plan.num_classes, plan.image_shape) if model is None
                 else model)
        build, tx = apply_transfer(config, build, recipe.tx)
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
    data_state = (None if resume_step is None
                  else checkpoints.data_state(resume_step, config.data.workers))
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
    stored = plan.spec.stored_shape or plan.image_shape
    console.say(f"poolnets: compiling the train and eval steps of {model_name} "
                f"({count_params(state.params):,} params, batch {config.batch_size})"
                + ("" if resume_step is None else f", to resume from step {resume_step}"))
    t_compile = time.perf_counter()
    train_fn, eval_fn = compile_steps(
        mesh, state, (config.batch_size, *stored), (config.eval_batch_size, *stored),
        image_dtype=jnp.dtype(plan.spec.stored_dtype),
        model=graphdef, tx=tx, num_classes=plan.num_classes,
        label_smoothing=config.label_smoothing, preprocess_spec=build_preprocess(config, plan),
    )
    return _Run(config, workdir, plan, recipe, train, test, mesh, state,
                put_replicated(mesh, step_key), train_fn, eval_fn, checkpoints, resume_step,
                data_state, model_name, config_dict, time.perf_counter() - t_compile)


def _make_hooks(run: _Run, record: Any, console: observe.Console, data_state: Any,
                clock: hooks.Stopwatch) -> list[hooks.Hook]:
    """log, evaluate, checkpoint, profile, in the order they act after a step."""
    config, total = run.config, run.recipe.total_steps
    per_epoch = run.recipe.steps_per_epoch
    rates = schedule_table(run.recipe.schedule, total)
    # a checkpoint at step s implies every record <= s: those are written at once, the
    # others after the next step is queued
    saves = hooks.Every(config.checkpoint_every_steps, at=(total,))
    later = hooks.Deferred()
    return [
        hooks.LogMetrics(  # a record at each evaluation's and checkpoint's step too
            hooks.Every(config.log_every, config.checkpoint_every_steps, per_epoch,
                        at=(total,)),
            at_once=saves,
            batch_size=config.batch_size, steps_per_epoch=per_epoch,
            learning_rate=rates.__getitem__, record=record, progress=console.advance,
            last_good=run.checkpoints.last_good, clock=clock, later=later),
        hooks.Evaluate(
            hooks.Every(per_epoch, at=(total,)),
            functools.partial(evaluate, run.eval_fn, mesh=run.mesh, data=run.test,
                              batch_size=config.eval_batch_size),
            at_once=saves, steps_per_epoch=per_epoch, record=record, say=console.say,
            clock=clock, later=later),
        hooks.Checkpoint(saves, run.checkpoints.save, data_state, clock),  # after the eval
        hooks.Profile(run.workdir, config.profile_steps, (run.resume_step or 0) + 1),
    ]


def train_and_evaluate(
    config: Any, workdir: str, *, model: Any = None, show_progress: bool = True
) -> dict[str, Any]:
    """Trains `config.model` (or the given `model`) on `config.dataset`; returns the summary.

    model: None (config.model), an NNX build `rngs -> nnx.Module` (initialised from
    config.seed) or an `nnx.Module` (trained from its own weights and RNG state); it is
    called as `model(x, train=...)`. show_progress: status lines (preparing data,
    compiling), a progress bar and a line per evaluation on the console (process 0 only).

    Raises ConfigError for a config that cannot work and CheckpointError for a checkpoint in
    workdir that cannot be resumed, both before anything is written to workdir;
    TrainingDiverged when the loss or gradients stop being finite (the newest checkpoint
    then holds the last good state); WriteError when a workdir file cannot be written (a full
    disk). A newest checkpoint that does not restore is skipped for the one before it (one
    line on stderr says which and why).
    """
    t_start = time.perf_counter()
    lead = jax.process_index() == 0
    console = observe.Console(enabled=show_progress and lead)
    run = _prepare(config, workdir, model, console)
    step = start = run.resume_step or 0
    state, workdir, total = run.state, run.workdir, run.recipe.total_steps
    writer = artifacts.MetricsWriter(workdir, run.resume_step) if lead else None
    scalars = observe.Scalars(workdir, enabled=lead and config.tensorboard,
                              resume_step=run.resume_step)
    if run.resume_step is not None and writer:
        writer.write({"step": step, "resumed_from_step": step})

    def record(entry: dict) -> None:
        if writer:
            writer.write(entry)
        scalars.write(entry)

    prefetch = input_prefetch(config)
    # Unplaced host batches go to the compiled step, whose dispatch transfers them: on one
    # process that is cheaper than jax.device_put; several processes must assemble them.
    place = (None if prefetch == 0 and jax.process_count() == 1
             else functools.partial(put_batch, run.mesh))
    batches = iter(train_batches(
        run.train, config.batch_size, seed=config.seed, num_steps=total, shard=_shard(),
        workers=config.data.workers, place=place, prefetch=prefetch))
    if run.resume_step is not None:
        batches.set_state(run.data_state)

    def data_state() -> dict:
        return {"workers": config.data.workers, "iterator": batches.get_state()}

    console.start_progress(total, start)
    clock = hooks.Stopwatch()  # train-phase time: the hooks pause it to evaluate and save
    every_hook = _make_hooks(run, record, console, data_state, clock)
    try:
        for step, (images, labels) in zip(range(start + 1, total + 1), batches, strict=True):
            state, metrics = run.train_fn(state, images, labels, run.step_key)
            for hook in every_hook:
                hook(step, state, metrics)
        if start == total:  # a finished run, restarted: its summary gets a fresh evaluation
            every_hook[1].run(step, state)
    finally:
        batches.close()  # stops Grain's prefetch thread and worker processes
        for hook in every_hook:
            hook.close(state)
        console.close()
        scalars.close()
        run.checkpoints.close()
        if writer:
            writer.close()
    summary = _summary(run, state, step, every_hook, clock.elapsed(), t_start)
    if lead and config.curves:
        observe.write_curves(workdir)
    if lead:
        artifacts.write_json_atomic(f"{workdir}/{artifacts.SUMMARY_FILE}", summary)
    return summary


def _summary(run: _Run, state: TrainState, step: int, every_hook: list[hooks.Hook],
             train_s: float, t_start: float) -> dict[str, Any]:
    """summary.json: the final evaluation, what was trained, and where the time went."""
    _, evaluator, saver, _ = every_hook
    final, config, start = evaluator.results[-1], run.config, run.resume_step or 0
    return {
        "model": run.model_name,
        "dataset": config.dataset,
        "test_accuracy": final["test_accuracy"],
        "test_loss": final["test_loss"],
        "steps": step,
        "epochs": final["epoch"],
        "params": count_params(state.params),
        "batch_size": config.batch_size,
        "seed": config.seed,
        "num_devices": run.plan.num_devices,
        "num_processes": jax.process_count(),
        "platform": f"{jax.default_backend()} ({platform.machine()})",
        "jax_version": jax.__version__,
        "config": run.config_dict,
        "train_time_s": round(time.perf_counter() - t_start, 3),
        "timing": {
            "compile_s": round(run.compile_s, 3),
            "train_loop_s": round(train_s, 3),
            "eval_s": round(evaluator.eval_s(), 3),
            "checkpoint_s": round(saver.seconds, 3),
            "images_per_s": round((step - start) * config.batch_size / max(train_s, 1e-9), 1),
            "resumed_from_step": run.resume_step,
        },
    }
