"""Exact parameter counts against published figures, counted with jax.eval_shape (no memory)."""

import math

import jax
import pytest
from flax import nnx

from poolnets.models import create, list_models

# torchvision (ImageNet, 1000 classes) and He et al. 2016 Table 6 (CIFAR, 10 classes).
PUBLISHED = {
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "resnet101": 44_549_160, "resnet152": 60_192_808,
    "vgg11": 132_863_336, "vgg13": 133_047_848, "vgg16": 138_357_544, "vgg19": 143_667_240,
    "vgg11_bn": 132_868_840, "vgg13_bn": 133_053_736, "vgg16_bn": 138_365_992,
    "vgg19_bn": 143_678_248,
    "resnet20": 269_722, "resnet32": 464_154, "resnet44": 658_586, "resnet56": 853_018,
    "resnet110": 1_727_962,
    "lenet5": 61_706,
}
IMAGENET = {n for n in PUBLISHED if n.startswith("vgg")} | {
    f"resnet{d}" for d in (18, 34, 50, 101, 152)}


def param_shapes(name, shape, **kw):
    """The parameters ({module: {name: ShapeDtypeStruct}}) of `name` built for an input of
    `shape` = (N, *spatial, C), abstractly."""
    model = nnx.eval_shape(lambda: create(
        name, num_classes=1000 if name in IMAGENET else 10, in_channels=shape[-1],
        input_size=shape[1:-1], **kw))
    return nnx.to_pure_dict(nnx.state(model, nnx.Param))


def count(tree) -> int:
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def test_list_models_has_every_name_of_the_api():
    assert set(PUBLISHED) | {"lenet5_1998", "allcnn_c"} <= set(list_models())
    assert list_models() == sorted(list_models())


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_parameter_count(name):
    shape = (1, 224, 224, 3) if name in IMAGENET else (1, 32, 32, 1 if "lenet" in name else 3)
    assert count(param_shapes(name, shape)) == PUBLISHED[name]


def test_explicit_published_choices_keep_the_counts():
    vgg = param_shapes("vgg11", (1, 224, 224, 3), downsample="max", head="flatten")
    assert count(vgg) == PUBLISHED["vgg11"]
    res = param_shapes("resnet18", (1, 224, 224, 3), downsample="max", head="avg")
    assert count(res) == PUBLISHED["resnet18"]
    # torchvision's adaptive 7x7 pool makes VGG's count independent of the input size.
    assert count(param_shapes("vgg11", (1, 64, 96, 3))) == PUBLISHED["vgg11"]


def test_lenet5_1998_layers_c1_to_f6_hold_60000_parameters():
    params = param_shapes("lenet5_1998", (1, 32, 32, 1))
    per_layer = {k: count(v) for k, v in params.items()}
    # LeCun et al. 1998, section II-B: C1 156, S2 12, C3 1,516, S4 32, C5 48,120, F6 10,164.
    assert per_layer == {"C1": 156, "S2": 12, "C3": 1516, "S4": 32, "C5": 48_120,
                         "F6": 10_164, "output": 850}
    assert sum(v for k, v in per_layer.items() if k != "output") == 60_000


def test_allcnn_c_count_matches_the_paper():
    n = count(param_shapes("allcnn_c", (1, 32, 32, 3)))
    # Hand count: 3x3 convs 3->96, 96->96, 96->96 (stride 2), 96->192, 192->192 x3 (one
    # strided), 1x1 192->192 and 192->10, all with bias; Springenberg et al. Table 3: "1.3M".
    by_hand = sum(k * k * cin * cout + cout for k, cin, cout in [
        (3, 3, 96), (3, 96, 96), (3, 96, 96), (3, 96, 192), (3, 192, 192), (3, 192, 192),
        (3, 192, 192), (1, 192, 192), (1, 192, 10)])
    assert n == by_hand == 1_369_738
    assert 1.3e6 <= n < 1.4e6


def test_resnet_convs_have_no_bias_and_batchnorm_has_scale_and_bias():
    params = param_shapes("resnet50", (1, 64, 64, 3), width=0.125)
    names = {tuple(p.key for p in path)
             for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]}
    assert any("conv" in str(path[-2]) for path in names)
    assert not any("conv" in str(path[-2]) and path[-1] == "bias" for path in names)
    assert ("stem_bn", "scale") in names and ("stem_bn", "bias") in names
    assert ("fc", "bias") in names
