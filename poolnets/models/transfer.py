"""Transfer learning from converted checkpoints: new head, frozen backbone, frozen BatchNorm.

Pure pieces for a training loop:
- `transfer_variables(pretrained, target, head)`: everything from `pretrained` except the
  classifier head, which comes from `target` (a freshly initialised model with the new
  `num_classes`).
- `param_labels(params, head)` / `freeze_backbone(tx, head)`: "head" / "backbone" labels and
  an optax transform that updates only the head (`optax.multi_transform` with
  `optax.set_to_zero()` for the backbone, which also keeps no optimizer state for it).
- `freeze_batch_stats(model)` (NNX): every BatchNorm normalises with its stored running
  statistics and leaves them unchanged, also under `train=True`, as torchvision's
  `FrozenBatchNorm2d` or calling `.eval()` on the BN layers. This is not the same as
  `model(x, train=False)`, which would also switch off dropout and the random pools, nor as
  discarding the updated statistics after each step, which would still normalise each
  batch by its own statistics.
- `load_pretrained(name, path)`: a torchvision file (`.pth`, `.safetensors`) or a directory
  written by `poolnets.weights.checkpoint.save_variables`; `init_from_checkpoint(state, name,
  path)` puts it into a freshly created NNX train state (new head kept from the fresh
  init), through the Linen<->NNX path map of `poolnets.models.nnx.convert`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

HEADS = {"resnet": ("fc",), "vgg": ("classifier",)}


def head_of(name: str) -> tuple[str, ...]:
    """Top-level modules forming the classifier head of zoo model `name`."""
    for family, head in HEADS.items():
        if name.startswith(family):
            return head
    raise ValueError(f"name {name!r}: no known classifier head; pass head= explicitly "
                     f"(known families: {', '.join(HEADS)})")


def _is_head(path: tuple, head: Sequence[str]) -> bool:
    """path: (collection, module, ...) key names."""
    return len(path) > 1 and path[1] in head


def transfer_variables(
    pretrained: dict[str, Any], target: dict[str, Any], head: Sequence[str]
) -> dict[str, Any]:
    """`target`'s structure, with every leaf outside `head` taken from `pretrained`.

    pretrained / target: Flax variables {"params", "batch_stats", ...}; target is the new
    model's `init` output (its head sized for the new number of classes).
    Raises ValueError listing backbone leaves missing from `pretrained` or of other shapes.
    """
    head = tuple(head)
    flat_pre = {tuple(k.key for k in p): v
                for p, v in jax.tree_util.tree_flatten_with_path(pretrained)[0]}
    problems = []

    def pick(key_path: Any, fresh: Any) -> Any:
        path = tuple(k.key for k in key_path)
        if _is_head(path, head):
            return fresh
        if path not in flat_pre:
            problems.append(f"{'/'.join(path)} missing")
            return fresh
        if jnp.shape(flat_pre[path]) != jnp.shape(fresh):
            problems.append(f"{'/'.join(path)}: pretrained {jnp.shape(flat_pre[path])}, "
                            f"model {jnp.shape(fresh)}")
        return flat_pre[path]

    out = jax.tree_util.tree_map_with_path(pick, target)
    if problems:
        problems.sort(key=lambda p: not p.startswith("params/"))  # kernels say most
        raise ValueError(f"pretrained variables do not fit the model outside head={head}: "
                         f"{problems[:8]} ({len(problems)} in all)")
    return out


def param_labels(params: Any, head: Sequence[str]) -> Any:
    """A pytree like `params` with "head" for leaves under a `head` module, else "backbone"."""
    head = tuple(head)
    return jax.tree_util.tree_map_with_path(
        lambda p, _: "head" if p[0].key in head else "backbone", params)


def freeze_backbone(tx: optax.GradientTransformation, head: Sequence[str]
                    ) -> optax.GradientTransformation:
    """`tx` on the head's parameters; zero updates (and no state) for all others."""
    head = tuple(head)
    return optax.multi_transform(
        {"head": tx, "backbone": optax.set_to_zero()}, lambda params: param_labels(params, head))


class FrozenBatchNorm(nnx.BatchNorm):
    """`nnx.BatchNorm` that always normalises with its running statistics and never updates
    them, whatever `use_running_average` it is given."""

    def __call__(self, x: jax.Array, use_running_average: bool | None = None, *,
                 mask: jax.Array | None = None) -> jax.Array:
        return super().__call__(x, use_running_average=True, mask=mask)


def freeze_batch_stats(model: nnx.Module) -> nnx.Module:
    """`model` with every `nnx.BatchNorm` made a `FrozenBatchNorm`, in place (same
    variables and graph, so split states and checkpoints are unchanged); returns it."""
    for _, node in nnx.iter_graph(model):
        if isinstance(node, nnx.BatchNorm) and not isinstance(node, FrozenBatchNorm):
            node.__class__ = FrozenBatchNorm  # only __call__ differs
    return model


def load_pretrained(name: str, path: str | os.PathLike) -> dict[str, Any]:
    """Variables from a torchvision checkpoint file of `name`, or from an orbax directory
    written by `poolnets.weights.checkpoint.save_variables`."""
    from poolnets.models.nnx.pretrained import load_torchvision_linen
    from poolnets.weights.checkpoint import restore_variables

    if os.path.isdir(path):
        return restore_variables(path)
    return load_torchvision_linen(name, path)


def init_from_checkpoint(state: Any, name: str, path: str | os.PathLike) -> Any:
    """`state` (anything with NNX-layout `params`, `batch_stats` dicts and dataclass
    `replace`, e.g. the training TrainState) with its backbone variables replaced by the
    pretrained ones of zoo model `name` from `path` (Linen layout, mapped by
    `poolnets.models.nnx.convert`); the head keeps `state`'s fresh initialisation. The
    optimizer state is kept: for sgd/adamw it depends on parameter shapes only (zeros)."""
    from poolnets.models.nnx.convert import from_linen, to_linen

    target, where = to_linen(state.params, state.batch_stats)
    merged = transfer_variables(load_pretrained(name, path), target, head_of(name))
    new = from_linen(merged, where, {"params": state.params,
                                     "batch_stats": state.batch_stats})
    return state.replace(params=new["params"], batch_stats=new["batch_stats"])
