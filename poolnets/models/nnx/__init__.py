"""The model zoo as Flax NNX modules (served as `poolnets.models`): `create(name, *,
num_classes, ...)`, `list_models(pattern)`, the Linen twins and the torchvision weights.

The catalogue of names is `catalog`; the families are one module each. Every model keeps
one contract
(`contract.ZooModel`): `model(x, train=None)`, `train()`/`eval()`, `forward_features`,
`forward_head`, `forward_intermediates`, `feature_info`, `pretrained_cfg`,
`reset_classifier`. Downsampling and head choices are the registries of `layers`.
"""

from __future__ import annotations

from poolnets.models.nnx.allcnn import AllCNN
from poolnets.models.nnx.catalog import (
    CREATE_ARGS,
    check_create_args,
    create,
    list_models,
    overrides_of,
)
from poolnets.models.nnx.cifar_resnet import CifarResNet
from poolnets.models.nnx.contract import ZooModel
from poolnets.models.nnx.layers import (
    downsample_names,
    head_names,
    register_downsample,
    register_head,
)
from poolnets.models.nnx.lenet import LeNet5, LeNet5_1998
from poolnets.models.nnx.linen import LinenModel, create_linen
from poolnets.models.nnx.pretrained import (
    load_torchvision,
    load_torchvision_linen,
    torchvision_layout,
)
from poolnets.models.nnx.resnet import ResNet
from poolnets.models.nnx.vgg import VGG

__all__ = ["CREATE_ARGS", "VGG", "AllCNN", "CifarResNet", "LeNet5", "LeNet5_1998", "LinenModel",
           "ResNet", "ZooModel", "check_create_args", "create", "create_linen", "downsample_names",
           "head_names", "list_models", "load_torchvision", "load_torchvision_linen",
           "overrides_of", "register_downsample", "register_head", "torchvision_layout"]
