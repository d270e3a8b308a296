"""Model zoo: `create(name, num_classes=..., downsample=..., head=...)` and `list_models()`.

Models are data: each name is a `functools.partial` of a family class with its published
configuration; `create` adds the caller's choices as module fields.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from poolnets.models._common import check_float_dtype
from poolnets.models.allcnn import AllCNN
from poolnets.models.cifar_resnet import cifar_resnet
from poolnets.models.lenet import LeNet5, LeNet5_1998

# API.md's Linen entry points, served by the NNX zoo through flax.nnx.bridge; this module's
# Linen `create` and `load_torchvision` move to the NNX zoo with the 0.2 flip.
from poolnets.models.nnx import create_linen, load_torchvision_linen  # noqa: F401
from poolnets.models.resnet import ResNet18, ResNet34, ResNet50, ResNet101, ResNet152
from poolnets.models.vgg import vgg
from poolnets.nn.registry import check_downsample, check_head
from poolnets.weights.torchvision import load_torchvision  # noqa: F401  (public API)

_MODELS: dict[str, functools.partial] = {
    "lenet5": functools.partial(LeNet5),
    "lenet5_1998": functools.partial(LeNet5_1998),
    **{f"vgg{n}": vgg(n) for n in (11, 13, 16, 19)},
    **{f"vgg{n}_bn": vgg(n, batch_norm=True) for n in (11, 13, 16, 19)},
    "resnet18": ResNet18,
    "resnet34": ResNet34,
    "resnet50": ResNet50,
    "resnet101": ResNet101,
    "resnet152": ResNet152,
    **{f"resnet{n}": cifar_resnet(n) for n in (20, 32, 44, 56, 110)},
    "allcnn_c": functools.partial(AllCNN),
}


def list_models() -> list[str]:
    """Sorted names accepted by `create`."""
    return sorted(_MODELS)


def create(
    name: str,
    *,
    num_classes: int,
    downsample: str | None = None,
    head: str | None = None,
    dtype: Any = jnp.float32,
    **overrides: Any,
) -> nn.Module:
    """Builds model `name` as a `flax.linen.Module`.

    Use: `variables = model.init(rngs, x, train=False)`; `logits, updates =
    model.apply(variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": k,
    "pool": k})` with `x: (N, *spatial, C)` and logits `(N, num_classes)` in `dtype`.

    downsample: a name from `poolnets.nn.downsample_names()` replacing every pooling layer of
        the model; None (default) keeps each model's published choice ("max" for LeNet-5, VGG
        and ResNet, "subsample" for lenet5_1998, "strided_conv" for allcnn_c). ImageNet
        ResNets pool only in the stem unless `downsample_blocks=True`; the CIFAR ResNets
        (resnet20..110) have no pool, so a name there replaces their stride-2 convolutions.
    head: a name from `poolnets.nn.head_names()`; None (default) keeps the published head
        ("flatten" for LeNet, 7x7 adaptive average + "flatten" for VGG, "avg" for ResNet and
        All-CNN-C).
    Deviation from API.md's signature (downsample="max", head="avg"): with those defaults
    `create("vgg16", num_classes=1000)` could not be torchvision's VGG-16, nor lenet5_1998 and
    allcnn_c their published models; None means "as published", and passing "max"/"avg"
    still selects those choices explicitly.
    dtype: compute dtype, one of float32, bfloat16, float16, float64 (checked here, before
        `init`); parameters stay float32.
    overrides: other fields of the family, e.g. `width` (channel multiplier), `spatial_dims`
        (1, 2 or 3), `downsample_blocks` (ResNets).
    """
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; choices: {list_models()}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    check_float_dtype(name, "dtype", dtype)
    if downsample is not None:
        check_downsample(downsample)
    if head is not None:
        check_head(head)
    ctor = _MODELS[name]
    fields = {f.name for f in dataclasses.fields(ctor.func)} - {"parent", "name"}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise TypeError(f"{name}: unknown override(s) {unknown}; fields: {sorted(fields)}")
    return ctor(num_classes=num_classes, downsample=downsample, head=head, dtype=dtype,
                **overrides)
