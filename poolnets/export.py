"""Trained models out of Python: the inference function as StableHLO with `jax.export`.

    python -m poolnets.export --workdir RUN --out FILE [--platforms cpu,cuda]

writes the newest checkpoint of the training run in RUN as one serialized
`jax.export.Exported`: lowered for CPU and CUDA, with a symbolic batch size, the weights
baked in as constants, the input as the dataset stores it (`(N, H, W, C)`, uint8 for the
TFDS datasets, uint8 levels 0..16 for `digits`, float32 in [0, 1] for `textures`) and the
dataset's evaluation preprocessing (scale, pad, per-channel normalisation; no augmentation)
inside. Its output is float32 logits `(N, num_classes)`. Load it with
`jax.export.deserialize(data).call(images)`; docs/export.md shows how.

The core, `export_fn(apply_fn, image_shape, ...)`, takes any function from normalised
float32 images to logits, so Linen (`linen_apply`) and NNX (`nnx_apply`) models go through
the same code; `export_model` picks the adapter, `export_run` restores a workdir.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from poolnets.data.augment import Preprocess, preprocess

__all__ = ["PLATFORMS", "ExportError", "export_fn", "export_model", "export_run",
           "linen_apply", "main", "nnx_apply"]

PLATFORMS = ("cpu", "cuda")
KNOWN_PLATFORMS = ("cpu", "cuda", "rocm", "tpu")  # what jax.export lowers for
INPUT_DTYPES = ("uint8", "float32")  # how poolnets' datasets store images


class ExportError(ValueError):
    """A workdir or output path that cannot be exported from or to; one-line message."""


def _check_platforms(platforms: Any) -> tuple[str, ...]:
    if isinstance(platforms, str) or not isinstance(platforms, Sequence) or not platforms:
        raise TypeError(f"platforms must be a non-empty sequence of names from "
                        f"{KNOWN_PLATFORMS}, got {platforms!r}")
    bad = [p for p in platforms if p not in KNOWN_PLATFORMS]
    if bad:
        raise ValueError(f"platforms={tuple(platforms)!r}: unknown {bad[0]!r}; choices: "
                         f"{', '.join(KNOWN_PLATFORMS)}")
    return tuple(platforms)


def _check_image_shape(image_shape: Any) -> tuple[int, ...]:
    if (not isinstance(image_shape, Sequence) or len(image_shape) < 2
            or any(isinstance(d, bool) or not isinstance(d, int | np.integer) or d <= 0
                   for d in image_shape)):
        raise ValueError(f"image_shape must be positive ints (*spatial, channels) without the "
                         f"batch dim, got {image_shape!r}")
    return tuple(int(d) for d in image_shape)


def export_fn(
    apply_fn: Callable[[jax.Array], jax.Array],
    image_shape: Sequence[int],
    input_dtype: Any = "uint8",
    *,
    preprocess_spec: Preprocess | None = None,
    platforms: Sequence[str] = PLATFORMS,
) -> jax.export.Exported:
    """Exports `images -> apply_fn(preprocess(images))` for a symbolic batch size.

    apply_fn: normalised float32 images `(b, *image_shape')` -> logits; every array it
        closes over (the weights) becomes a constant of the exported program.
    image_shape: one stored image without the batch dim, e.g. `(28, 28, 1)`.
    input_dtype: the stored dtype, "uint8" or "float32".
    preprocess_spec: the dataset's `Preprocess`, applied as in evaluation (no augmentation);
        None: the input is only cast to float32.
    platforms: what to lower for (the program then runs on any of them).
    Returns the `jax.export.Exported` (float32 logits); nothing is compiled.
    """
    if not callable(apply_fn):
        raise TypeError(f"apply_fn must be callable, got {apply_fn!r}")
    shape = _check_image_shape(image_shape)
    if str(np.dtype(input_dtype)) not in INPUT_DTYPES:
        raise ValueError(f"input_dtype={input_dtype!r}; choices: {', '.join(INPUT_DTYPES)}")
    if preprocess_spec is not None and not isinstance(preprocess_spec, Preprocess):
        raise TypeError(f"preprocess_spec must be a poolnets.data.Preprocess or None, got "
                        f"{preprocess_spec!r}")
    platforms = _check_platforms(platforms)

    def infer(images: jax.Array) -> jax.Array:
        if preprocess_spec is None:
            x = images.astype(jnp.float32)
        else:
            x = preprocess(images, None, preprocess_spec)  # key None: evaluation
        return apply_fn(x).astype(jnp.float32)

    batch = jax.export.symbolic_shape("batch")  # >= 1 (jax.export's default bound)
    spec = jax.ShapeDtypeStruct((*batch, *shape), np.dtype(input_dtype))
    return jax.export.export(jax.jit(infer), platforms=platforms)(spec)


def linen_apply(module: Any, variables: Any) -> Callable[[jax.Array], jax.Array]:
    """The evaluation-mode forward pass of a Linen `module` with `variables`.

    Fixed "dropout"/"pool" keys are passed (as the trainer's eval step does) so a module that
    asks for one still runs; with train=False none is drawn from.
    """

    def apply(x: jax.Array) -> jax.Array:
        key = jax.random.key(0)
        return module.apply(variables, x, train=False, rngs={"dropout": key, "pool": key})

    return apply


def nnx_apply(model: Any) -> Callable[[jax.Array], jax.Array]:
    """The evaluation-mode forward pass of an NNX `model` (its state as it is now).

    The model is split once and merged inside each trace, so tracing mutates nothing of
    `model` (an RNG counter, a BatchNorm statistic).
    """
    from flax import nnx

    graphdef, state = nnx.split(model)
    return lambda x: nnx.merge(graphdef, state)(x, train=False)


def export_model(
    model: Any,
    variables: Any = None,
    *,
    image_shape: Sequence[int],
    input_dtype: Any = "uint8",
    preprocess_spec: Preprocess | None = None,
    platforms: Sequence[str] = PLATFORMS,
) -> jax.export.Exported:
    """`export_fn` for a zoo model: an NNX module (variables None: its own state), or a Linen
    module with its `variables` ({"params", "batch_stats"})."""
    import flax.linen as nn
    from flax import nnx

    if isinstance(model, nnx.Module):
        if variables is not None:
            raise TypeError("variables must be None for an NNX model (it holds its state)")
        apply_fn = nnx_apply(model)
    elif isinstance(model, nn.Module):
        if not isinstance(variables, dict) or "params" not in variables:
            raise TypeError(f"a Linen model needs variables {{'params': ...}}, got "
                            f"{type(variables).__name__}")
        apply_fn = linen_apply(model, variables)
    else:
        raise TypeError(f"model must be a flax.nnx.Module or flax.linen.Module, got "
                        f"{type(model).__name__}")
    return export_fn(apply_fn, image_shape, input_dtype, preprocess_spec=preprocess_spec,
                     platforms=platforms)


def _check_out(out: str) -> str:
    """`out` as an absolute path whose directory exists and is writable (ExportError)."""
    path = os.path.abspath(out)
    directory = os.path.dirname(path)
    if os.path.isdir(path):
        raise ExportError(f"--out {out!r} is a directory; give a file name")
    if not os.path.isdir(directory):
        raise ExportError(f"--out {out!r}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ExportError(f"--out {out!r}: directory {directory} is not writable")
    return path


def checkpoint_model(build: Any, saved: dict, image_shape: tuple) -> Any:
    """The NNX model of `build` holding a checkpoint's state `saved` (restored without a
    target: dicts, RNG keys as their key data, list indices possibly as strings)."""
    from flax import nnx

    from poolnets.training.state import as_build, graphdef_of

    build = as_build(build)
    graphdef = graphdef_of(build, image_shape)
    abstract = nnx.eval_shape(lambda: build(rngs=nnx.Rngs(0)))
    states = []
    for kind, name in ((nnx.Param, "params"), (nnx.BatchStat, "batch_stats"),
                       (nnx.RngState, "rngs")):
        state = nnx.state(abstract, kind)
        nnx.replace_by_pure_dict(state, saved.get(name) or {})
        flat = dict(nnx.to_flat_state(state))
        for variable in flat.values():
            if isinstance(variable, nnx.RngKey):  # saved as key data
                variable.set_value(jax.random.wrap_key_data(variable.get_value()))
        states.append(nnx.from_flat_state(flat))
    return nnx.merge(graphdef, *states)


def _read_config(workdir: str) -> dict:
    from poolnets.training.artifacts import CONFIG_FILE

    if not os.path.isdir(workdir):
        raise ExportError(f"--workdir {workdir!r} is not a directory")
    path = os.path.join(workdir, CONFIG_FILE)
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise ExportError(f"--workdir {workdir!r} has no {CONFIG_FILE} (not a training "
                          "run's workdir)") from None
    except (OSError, ValueError) as e:
        raise ExportError(f"{path} cannot be read: {e}") from None


def _abstract_state(checkpoints: Any) -> Any:
    """The saved train state's tree (nested dicts) as ShapeDtypeStructs on this process's
    first device, from the newest checkpoint whose metadata reads; None if none does.

    A restore without a target asks for the devices the run was saved from (orbax refuses
    another topology), and a target built from the model would need the run's optimizer.
    """
    import logging

    import orbax.checkpoint as ocp

    from poolnets.training.artifacts import STATE_ITEM

    sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    absl = logging.getLogger("absl")

    def quiet(record: logging.LogRecord) -> bool:  # orbax logs a missing optional file
        return False

    for step in checkpoints.steps():
        absl.addFilter(quiet)
        try:
            with ocp.StandardCheckpointer() as reader:
                where = os.path.join(checkpoints.directory, str(step), STATE_ITEM)
                tree = reader.metadata(where).item_metadata.tree
        except Exception:  # noqa: BLE001 -- unreadable: restore_latest reports it
            continue
        finally:
            absl.removeFilter(quiet)
        return jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding),
                            tree)
    return None


def export_run(
    workdir: str, out: str | None = None, *, model: Any = None,
    platforms: Sequence[str] = PLATFORMS,
) -> jax.export.Exported:
    """Exports the newest restorable checkpoint of the training run in `workdir`.

    The NNX model is rebuilt from workdir/config.json (`poolnets.training.loop.create_model`)
    and given the checkpoint's state; pass `model` (the build or module given to
    `train_and_evaluate`) when the run was trained on one. Input:
    the dataset's stored shape and dtype; preprocessing: its evaluation preprocessing.
    out: where the serialized program is written (atomically); None: only returned.
    Raises ExportError (no workdir, no config, no checkpoint, bad `out`), ConfigError and
    CheckpointError with one-line messages, all before anything is written.
    """
    from ml_collections import ConfigDict

    from poolnets.training.artifacts import Checkpoints, write_atomic
    from poolnets.training.config import check_config
    from poolnets.training.loop import create_model

    path = None if out is None else _check_out(out)
    saved = _read_config(workdir)
    config = ConfigDict(saved)
    # num_devices=1: the device count of training does not matter to inference
    plan = check_config(config, num_devices=1, check_model_name=model is None)
    checkpoints = Checkpoints(workdir, keep=1)
    state, step = checkpoints.restore_latest(_abstract_state(checkpoints), saved)
    if step is None:
        raise ExportError(f"--workdir {workdir!r} has no checkpoint in "
                          f"{checkpoints.directory}")
    module = checkpoint_model(model if model is not None else create_model(
        config, plan.num_classes, plan.image_shape), state, plan.image_shape)
    spec = plan.spec
    # the eval step ignores the augmentation fields, so the dataset's spec is the run's
    exported = export_model(module, image_shape=spec.stored_shape or spec.image_shape,
                            input_dtype=spec.stored_dtype, preprocess_spec=spec.preprocess,
                            platforms=platforms)
    if path is not None:
        data = exported.serialize()
        write_atomic(path, lambda f: f.write(data))
        # write_atomic's temporary file is private (0600); the export is meant to be shared
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(path, 0o666 & ~umask)
    return exported


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m poolnets.export`; returns 0, or exits 2 with one line for bad input."""
    parser = _Parser(prog="poolnets.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="a training run's workdir")
    parser.add_argument("--out", required=True, help="the file to write")
    parser.add_argument("--platforms", default=",".join(PLATFORMS),
                        help=f"comma-separated, from {', '.join(KNOWN_PLATFORMS)} "
                             f"(default {','.join(PLATFORMS)})")
    args = parser.parse_args(argv)
    from poolnets.training.artifacts import CheckpointError, WriteError
    from poolnets.training.config import ConfigError

    try:
        platforms = _check_platforms(args.platforms.split(","))
        exported = export_run(args.workdir, args.out, platforms=platforms)
    except (ExportError, ConfigError, CheckpointError, WriteError, ValueError) as e:
        parser.error(" ".join(str(e).split()))
    avals = ", ".join(str(a) for a in exported.in_avals)
    print(f"wrote {args.out}: {avals} -> {exported.out_avals[0]} for "
          f"{', '.join(exported.platforms)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
