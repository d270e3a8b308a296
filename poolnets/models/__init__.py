"""The model zoo, as Flax NNX modules: `create(name, *, num_classes, ...)`,
`list_models(pattern)`, `load_torchvision(name, path)`, and the downsample and head
registries every model builds from (`downsample_names`, `head_names`, `register_downsample`,
`register_head`). Linen users get the same networks from `create_linen` and
`load_torchvision_linen`, generated from the NNX definitions by Flax's bridge.

    model = create("resnet20", num_classes=10, downsample="blur")   # an nnx.Module
    logits = model(x)                                               # x: (N, 32, 32, 3)
"""

from poolnets.models.nnx import (
    VGG,
    AllCNN,
    CifarResNet,
    LeNet5,
    LeNet5_1998,
    LinenModel,
    ResNet,
    ZooModel,
    create,
    create_linen,
    downsample_names,
    head_names,
    list_models,
    load_torchvision,
    load_torchvision_linen,
    overrides_of,
    register_downsample,
    register_head,
)

__all__ = ["VGG", "AllCNN", "CifarResNet", "LeNet5", "LeNet5_1998", "LinenModel", "ResNet",
           "ZooModel", "create", "create_linen", "downsample_names", "head_names",
           "list_models", "load_torchvision", "load_torchvision_linen", "overrides_of",
           "register_downsample", "register_head"]
