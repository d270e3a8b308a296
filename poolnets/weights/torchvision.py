"""torchvision ResNet / VGG state dicts -> Flax variables {"params", "batch_stats"}.

The expected state dict is derived from a variable tree the caller gives (`derive_layout`:
shapes under the model's module paths; the models own their pretrained entry points and
pass it in), by renaming modules to torchvision's attribute paths:

    ResNet  stem_conv, stem_bn -> conv1, bn1;  stage{i}_block{j} -> layer{i}.{j};
            proj_conv, proj_bn -> downsample.0, downsample.1;  fc -> fc
    VGG     conv{n}, bn{n} -> features.{k}, features.{k+1} (k: index of the n-th conv in
            torchvision's `features` Sequential, given with the tree);
            fc0, fc1, classifier -> classifier.0/3/6

and leaves: kernel -> weight, bias -> bias, scale -> weight, batch_stats mean / var ->
running_mean / running_var (`num_batches_tracked` is accepted and ignored; checkpoints
saved before torch 0.4.1 lack it). Layouts: conv OIHW -> HWIO; Linear (out, in) -> (in,
out); VGG's first classifier layer also reorders its inputs, since torchvision flattens the
7x7 pooled map as (C, H, W) and poolnets, channels-last, as (H, W, C).

A layout is passed as `layout_for`, a function of the number of classes returning the
`Entry`s (`poolnets.models` passes its `torchvision_layout`), so this module imports no model.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from poolnets.weights.reader import read_state_dict
from poolnets.weights.torch_file import StateDict

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
VGGS = tuple(f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn"))
SUPPORTED = RESNETS + VGGS
VGG_GRID = (7, 7)  # torchvision VGG's adaptive average pool output, flattened by fc0
LEAVES = {("params", "kernel"): "weight", ("params", "bias"): "bias",
          ("params", "scale"): "weight", ("batch_stats", "mean"): "running_mean",
          ("batch_stats", "var"): "running_var"}


@dataclasses.dataclass(frozen=True)
class Entry:
    """One state-dict tensor and where it goes: variables[collection][*path]."""

    key: str
    torch_shape: tuple[int, ...]
    collection: str
    path: tuple[str, ...]
    layout: str  # "conv" | "linear" | "linear_chw" | "vector"


def _check_name(name: str) -> None:
    if name not in SUPPORTED:
        raise ValueError(f"name {name!r} has no torchvision checkpoint mapping; "
                         f"choices: {', '.join(SUPPORTED)}")


def _torch_module(name: str, path: tuple[str, ...], feature_index: Sequence[int]) -> str:
    """torchvision's attribute path of the poolnets module at `path`."""
    if name.startswith("resnet"):
        top = {"stem_conv": "conv1", "stem_bn": "bn1", "fc": "fc"}
        if path[0] in top:
            return top[path[0]]
        stage, block = path[0].removeprefix("stage").split("_block")
        inner = {"proj_conv": "downsample.0", "proj_bn": "downsample.1"}.get(path[1], path[1])
        return f"layer{stage}.{block}.{inner}"
    top = {"fc0": "classifier.0", "fc1": "classifier.3", "classifier": "classifier.6"}
    if path[0] in top:
        return top[path[0]]
    kind, n = re.fullmatch(r"(conv|bn)(\d+)", path[0]).groups()
    return f"features.{feature_index[int(n)] + (kind == 'bn')}"


def derive_layout(name: str, variables: Any, feature_index: Sequence[int] = ()
                  ) -> tuple[Entry, ...]:
    """Every state-dict tensor of torchvision's `name`, and where it goes in `variables`.

    variables: {"params", "batch_stats"} of the target model, any leaves with a `.shape`
        (e.g. `jax.eval_shape`'s), under its module paths (names as in the module docstring).
    feature_index: VGG only: for each conv in order, its index in torchvision's `features`.
    """
    _check_name(name)
    if name.startswith("vgg") and not feature_index:
        raise ValueError(f"{name}: feature_index (each conv's index in torchvision's "
                         "`features`) is needed to name VGG's layers")
    entries = []
    for key_path, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]:
        collection, *path = (k.key for k in key_path)
        module, field = tuple(path[:-1]), path[-1]
        shape = tuple(leaf.shape)
        if field == "kernel" and len(shape) == 4:
            kind, torch_shape = "conv", (shape[3], shape[2], shape[0], shape[1])
        elif field == "kernel":
            kind = "linear_chw" if module == ("fc0",) else "linear"
            torch_shape = (shape[1], shape[0])
        else:
            kind, torch_shape = "vector", shape
        key = f"{_torch_module(name, module, feature_index)}.{LEAVES[(collection, field)]}"
        entries.append(Entry(key, torch_shape, collection, tuple(path), kind))
    return tuple(entries)


LayoutFor = Callable[[int], tuple[Entry, ...]]  # num_classes -> the layout


def batch_norm_counters(entries: tuple[Entry, ...]) -> set[str]:
    """The optional `num_batches_tracked` key of every BatchNorm layer."""
    return {e.key.rsplit(".", 1)[0] + ".num_batches_tracked" for e in entries
            if e.key.endswith(".running_mean")}


def expected_shapes(name: str, layout_for: LayoutFor, num_classes: int = 1000
                    ) -> dict[str, tuple[int, ...]]:
    """torchvision's `model.state_dict()` shapes for `name`, num_batches_tracked included."""
    _check_name(name)
    entries = layout_for(num_classes)
    shapes = {e.key: e.torch_shape for e in entries}
    shapes.update({k: () for k in sorted(batch_norm_counters(entries))})
    return shapes


Shapes = dict[str, tuple[int, ...]]


def _num_classes(name: str, shapes: Shapes) -> int:
    key = "fc.weight" if name.startswith("resnet") else "classifier.6.weight"
    shape = shapes.get(key)
    if shape is None or len(shape) != 2:
        raise ValueError(f"state dict is not a torchvision {name}: classifier {key!r} is "
                         f"{'missing' if shape is None else f'of shape {shape}'}")
    return int(shape[0])


def _to_flax(entry: Entry, value: np.ndarray) -> np.ndarray:
    value = np.asarray(value, np.float32)
    if entry.layout == "conv":
        value = value.transpose(2, 3, 1, 0)
    elif entry.layout == "linear":
        value = value.T
    elif entry.layout == "linear_chw":  # rows c*49 + h*7 + w  ->  (h*7 + w)*C + c
        out, flat = value.shape
        channels = flat // int(np.prod(VGG_GRID))
        value = value.reshape(out, channels, *VGG_GRID).transpose(2, 3, 1, 0).reshape(-1, out)
    return np.ascontiguousarray(value)


def _mismatch_report(name: str, entries: tuple[Entry, ...], shapes: Shapes) -> str | None:
    expected = {e.key: e.torch_shape for e in entries}
    optional = batch_norm_counters(entries)
    missing = [k for k in expected if k not in shapes]
    extra = [k for k in shapes if k not in expected and k not in optional]
    wrong = [f"{k}: file {shapes[k]}, expected {expected[k]}"
             for k in expected if k in shapes and shapes[k] != expected[k]]
    wrong += [f"{k}: file {shapes[k]}, expected ()"
              for k in optional if k in shapes and shapes[k] != ()]
    if not (missing or extra or wrong):
        return None
    # Wrong shapes first: the most specific finding, and callers may cut long messages short.
    parts = [f"{title} ({len(items)}): {items[:8]}" for title, items in
             (("wrong shapes", wrong),
              ("missing keys", [f"{k} {expected[k]}" for k in missing]),
              ("unexpected keys", [f"{k} {shapes[k]}" for k in extra])) if items]
    return f"state dict does not match torchvision {name}: " + "; ".join(parts)


def check_layout(name: str, shapes: Shapes, layout_for: LayoutFor) -> tuple[Entry, ...]:
    """The layout of torchvision's `name` with the classifier rows of `shapes` ({key:
    shape}); raises ValueError naming the first missing, unexpected and wrongly shaped keys.
    Needs shapes only, so a file can be checked before its tensors are read."""
    _check_name(name)
    entries = layout_for(_num_classes(name, shapes))
    report = _mismatch_report(name, entries, shapes)
    if report:
        raise ValueError(report)
    return entries


def convert_torchvision(name: str, state_dict: StateDict, layout_for: LayoutFor
                        ) -> dict[str, Any]:
    """Flax variables {"params", "batch_stats"} (NumPy float32) along the layout
    `layout_for(<rows of the file's classifier>)` from a torchvision state dict.

    Raises ValueError naming the first missing, unexpected and wrongly shaped keys.
    """
    entries = check_layout(name, {k: tuple(np.shape(v)) for k, v in state_dict.items()},
                           layout_for)
    variables: dict[str, Any] = {}
    for entry in entries:
        node = variables.setdefault(entry.collection, {})
        for part in entry.path[:-1]:
            node = node.setdefault(part, {})
        node[entry.path[-1]] = _to_flax(entry, state_dict[entry.key])
    return variables


def load_torchvision(name: str, path: str | os.PathLike, layout_for: LayoutFor
                     ) -> dict[str, Any]:
    """Reads a torchvision checkpoint of model `name` and converts it for poolnets.

    name: one of `SUPPORTED` (resnet18..152, vgg11..19 and their "_bn" forms).
    path: a `model.state_dict()` saved as safetensors or by `torch.save` (zip or legacy
        format), e.g. torchvision's downloaded `resnet18-f37072fd.pth`. PyTorch is not needed;
        a pickle that references anything but tensors raises UnsafePickleError unexecuted.
        The file's keys and shapes are checked against `name`'s layout before any tensor is
        read, and tensors holding NaN or Inf are refused by name (ValueError).
    layout_for: the target's layout by number of classes.
    Returns {"params", "batch_stats"} along `layout_for(C)`, C the number of rows of the
    checkpoint's classifier (1000 for ImageNet). Inputs must be normalised as for
    torchvision (RGB in [0, 1], mean/std per channel), channels-last.
    """
    _check_name(name)
    state_dict = read_state_dict(
        path, check_shapes=functools.partial(check_layout, name, layout_for=layout_for))
    return convert_torchvision(name, state_dict, layout_for)
