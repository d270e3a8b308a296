"""Pretrained torchvision weights for the NNX zoo and its Linen form: the models own these
entry points and hand `poolnets.weights` the layout to convert along (the variable tree of
`create(name)`, built abstractly, and VGG's conv positions), so `poolnets.weights` imports
no model.

    model = load_torchvision("resnet50", "resnet50-0676ba61.pth")      # an nnx.Module
    variables = load_torchvision_linen("resnet50", "resnet50-0676ba61.pth")
    logits = create_linen("resnet50", num_classes=1000).apply(variables, x)
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from poolnets.models.nnx.catalog import create
from poolnets.models.nnx.contract import ZooModel
from poolnets.weights import torchvision as tv


def _abstract(name: str, num_classes: int) -> ZooModel:
    # Named dropout/pool streams, so that `_fill_rng_state` can reseed each by its tag.
    return nnx.eval_shape(lambda: create(name, num_classes=num_classes,
                                         rngs=nnx.Rngs(0, dropout=0, pool=0)))


def _variable_tree(model: ZooModel) -> dict[str, Any]:
    """{"params", "batch_stats"} of `model` as nested dicts under its attribute paths."""
    out = {}
    for collection, kind in (("params", nnx.Param), ("batch_stats", nnx.BatchStat)):
        flat = nnx.to_flat_state(nnx.state(model, kind))
        tree: dict[str, Any] = {}
        for path, variable in flat:
            node = tree
            for part in path[:-1]:
                node = node.setdefault(str(part), {})
            node[str(path[-1])] = variable.get_value()
        if tree:
            out[collection] = tree
    return out


def _feature_index(model: ZooModel) -> tuple[int, ...]:
    """VGG: each conv's position in its ops, which is its index in torchvision's
    `features` Sequential (conv, [bn], relu per conv, one pool per downsampling point)."""
    ops = [op for stage in model.stages() for op in stage.ops]
    return tuple(i for i, op in enumerate(ops) if isinstance(op, nnx.Conv))


@functools.lru_cache(maxsize=8)  # a load checks the layout, then converts along it
def torchvision_layout(name: str, num_classes: int = 1000) -> tuple[tv.Entry, ...]:
    """torchvision's state dict of `name` and where each tensor goes in `create(name)`."""
    if name not in tv.SUPPORTED:
        raise ValueError(f"name {name!r} has no torchvision checkpoint mapping; "
                         f"choices: {', '.join(tv.SUPPORTED)}")
    model = _abstract(name, num_classes)
    index = _feature_index(model) if name.startswith("vgg") else ()
    return tv.derive_layout(name, _variable_tree(model), index)


def load_torchvision_linen(name: str, path: str | os.PathLike) -> dict[str, Any]:
    """Variables {"params", "batch_stats"} of `create_linen(name, num_classes=C)` from a
    torchvision checkpoint file (C: the rows of its classifier, 1000 for ImageNet).

    name: resnet18..152, vgg11..19 and their "_bn" forms. path: safetensors or torch.save
    (read without torch or pickle code; see `poolnets.weights.torchvision.load_torchvision`).
    Inputs as torchvision's, channels-last: RGB in [0, 1] normalised by the model's
    `pretrained_cfg` mean and std.
    """
    return tv.load_torchvision(name, path, functools.partial(torchvision_layout, name))


def load_torchvision(name: str, path: str | os.PathLike) -> ZooModel:
    """`create(name, num_classes=C)` holding a torchvision checkpoint's weights, in
    evaluation mode (C: the rows of its classifier). Its dropout and pool streams are
    seeded 0 (`nnx.reseed(model, dropout=..., pool=...)` changes them)."""
    variables = load_torchvision_linen(name, path)
    key = "classifier" if name.startswith("vgg") else "fc"
    model = _abstract(name, int(variables["params"][key]["kernel"].shape[-1]))
    kinds = {"params": nnx.Param, "batch_stats": nnx.BatchStat}
    for collection, kind in kinds.items():
        for p, variable in nnx.to_flat_state(nnx.state(model, kind)):
            node = variables[collection]
            for part in p:
                node = node[str(part)]
            variable.set_value(jnp.asarray(node))
    tags = {n.key.tag for _, n in nnx.iter_graph(model) if isinstance(n, nnx.RngStream)}
    nnx.reseed(model, **dict.fromkeys(tags, 0))
    abstract = [p for p, v in nnx.to_flat_state(nnx.state(model))
                if isinstance(v.get_value(), jax.ShapeDtypeStruct)]
    if abstract:  # a state the file does not hold and nothing here filled
        raise ValueError(f"{name}: no value loaded for {abstract[:4]}")
    return model


__all__ = ["load_torchvision", "load_torchvision_linen", "torchvision_layout"]
