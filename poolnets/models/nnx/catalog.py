"""The zoo's catalogue: each model name, its family and published configuration, and
`create` / `list_models` / `overrides_of` over them."""

from __future__ import annotations

import fnmatch
import inspect
from typing import Any

import jax.numpy as jnp
from flax import nnx

from poolnets.models.nnx.allcnn import AllCNN
from poolnets.models.nnx.cifar_resnet import CIFAR_RESNETS, CifarResNet
from poolnets.models.nnx.contract import ZooModel, check_positive_int
from poolnets.models.nnx.layers import check_downsample, check_head, closest
from poolnets.models.nnx.lenet import LeNet5, LeNet5_1998
from poolnets.models.nnx.resnet import RESNETS, ResNet
from poolnets.models.nnx.vgg import VGG, VGGS

# Each name: a family and its published configuration.
_MODELS: dict[str, tuple[type[ZooModel], dict[str, Any]]] = {
    "lenet5": (LeNet5, {}),
    "lenet5_1998": (LeNet5_1998, {}),
    **{name: (VGG, fields) for name, fields in VGGS.items()},
    **{name: (ResNet, fields) for name, fields in RESNETS.items()},
    **{name: (CifarResNet, fields) for name, fields in CIFAR_RESNETS.items()},
    "allcnn_c": (AllCNN, {}),
}
# Arguments of `create` itself; the rest of a family's keyword arguments are overrides.
_COMMON = {"num_classes", "rngs", "in_channels", "input_size", "downsample", "head", "dtype",
           "param_dtype"}
CREATE_ARGS = frozenset(_COMMON)


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names accepted by `create` that match the fnmatch `pattern` (e.g. "resnet*")."""
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be a str (an fnmatch pattern), got {pattern!r}")
    return sorted(n for n in _MODELS if fnmatch.fnmatchcase(n, pattern))


def overrides_of(name: str) -> list[str]:
    """The keyword overrides model `name` accepts (spatial_dims, width, ...)."""
    family, _ = _MODELS[name]
    params = inspect.signature(family.__init__).parameters
    return sorted(set(params) - _COMMON - {"self", "source"})


def check_create_args(name: Any, *, num_classes: Any, downsample: Any, head: Any,
                      overrides: dict[str, Any]) -> None:
    """`create`'s checks that need no model: the name, num_classes, the downsample and head
    names and the override names (also run by `create_linen` before anything is traced)."""
    if not isinstance(name, str) or name not in _MODELS:
        raise ValueError(closest("model", name, _MODELS))
    check_positive_int(name, "num_classes", num_classes)
    if downsample is not None:
        check_downsample(downsample)
    if head is not None:
        check_head(head)
    allowed = overrides_of(name)
    for key in overrides:
        if key not in allowed:
            raise TypeError(f"{name}: {closest('override', key, allowed)}")


def create(
    name: str,
    *,
    num_classes: int,
    rngs: nnx.Rngs | None = None,
    in_channels: int | None = None,
    input_size: Any = None,
    downsample: str | None = None,
    head: str | None = None,
    dtype: Any = jnp.float32,
    param_dtype: Any = jnp.float32,
    **overrides: Any,
) -> ZooModel:
    """Builds model `name` as a `flax.nnx.Module`, in evaluation mode (`model.train()`
    switches; `model(x, train=...)` overrides per call).

    rngs: None gives a fresh `nnx.Rngs(0)` (same name, options and seed: same weights);
        its "params" stream draws the weights, "dropout" and "pool" the model's dropout and
        random pools (streams fall back to "default").
    in_channels: None is the published input's (1 for LeNet, 3 otherwise).
    input_size: spatial size, an int or one per spatial dim; None is the published input's
        (32 or 224 per dim). It fixes what plain flatten and attention heads are built for.
    downsample / head: names from `downsample_names()` / `head_names()`; None keeps each
        model's published choice ("max" for LeNet-5, VGG and ResNet, "subsample" for
        lenet5_1998, "strided_conv" for allcnn_c; heads "flatten" for LeNet and VGG, "avg"
        otherwise). The CIFAR ResNets have no pool: a name replaces their stride-2 convs;
        ImageNet ResNets pool only in the stem unless `downsample_blocks=True`.
    dtype / param_dtype: compute and parameter dtypes (float32, bfloat16, float16, float64).
    overrides: the family's other options, e.g. `width`, `spatial_dims` (1, 2, 3),
        `downsample_blocks` (ResNets); `overrides_of(name)` lists them.
    """
    check_create_args(name, num_classes=num_classes, downsample=downsample, head=head,
                      overrides=overrides)
    family, fields = _MODELS[name]
    if in_channels is None:
        in_channels = 1 if family in (LeNet5, LeNet5_1998) else 3
    return family(num_classes=num_classes, rngs=nnx.Rngs(0) if rngs is None else rngs,
                  in_channels=in_channels, input_size=input_size, downsample=downsample,
                  head=head, dtype=dtype, param_dtype=param_dtype, **{**fields, **overrides})
