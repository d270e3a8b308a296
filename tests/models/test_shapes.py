"""Output shapes of every family under every downsample and head choice, in 1-, 2- and 3-D.

Shapes come from jax.eval_shape (tracing only), so hundreds of configurations stay cheap;
numerical behaviour is tested in test_behaviour.py.
"""

import itertools
import math
import re

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from poolnets.models import create, downsample_names, head_names
from poolnets.models.nnx.layers import Point, make_downsample

# name: (2-D input shape, overrides keeping it small)
FAMILIES = {
    "lenet5": ((2, 32, 32, 1), {}),
    "lenet5_1998": ((2, 32, 32, 1), {}),
    "allcnn_c": ((2, 16, 16, 3), {"width": 0.125}),
    "vgg11_bn": ((2, 32, 32, 3), {"width": 0.125}),
    "resnet18": ((2, 32, 32, 3), {"width": 0.125}),
    "resnet50": ((2, 32, 32, 3), {"width": 0.125, "downsample_blocks": True}),
    "resnet20": ((2, 16, 16, 3), {"width": 0.25}),
}
EVERY_PAIR = ("lenet5",)  # the cheapest to trace: every (downsample, head) pair
EVERY_DOWNSAMPLE = ("resnet20",)  # with its published head
EVERY_HEAD = ("resnet18",)  # with its published downsampling; the fc wiring per head


def cases():
    """lenet5 with every pair, resnet20 with every downsample, resnet18 with every head;
    the other families share the downsample names between them, each with a head (an
    abstract build of a deeper model costs seconds)."""
    for name in FAMILIES:
        if name in EVERY_PAIR:
            yield from ((name, d, h) for d, h in itertools.product(downsample_names(),
                                                                     head_names()))
        elif name in EVERY_DOWNSAMPLE:
            yield from ((name, d, None) for d in downsample_names())
        elif name in EVERY_HEAD:
            yield from ((name, None, h) for h in head_names())
        else:
            others = [n for n in FAMILIES if n not in EVERY_PAIR + EVERY_DOWNSAMPLE + EVERY_HEAD]
            i = others.index(name)
            heads = itertools.islice(itertools.cycle(head_names()), i, None)
            picked = downsample_names()[i::len(others)]
            yield from ((name, d, h) for d, h in zip(picked, heads, strict=False))


def trace(name, shape, *, train=True, **kw):
    """(logits, params) of an abstract build and forward; where the model rejects the size,
    at the minimum it names."""
    def run(shape):
        model = nnx.eval_shape(lambda: create(name, num_classes=5, in_channels=shape[-1],
                                              input_size=shape[1:-1], **kw))
        x = jax.ShapeDtypeStruct(shape, jnp.float32)
        logits = nnx.eval_shape(lambda m, x: m(x, train=train), model, x)
        return logits, nnx.to_pure_dict(nnx.state(model, nnx.Param))

    try:
        return run(shape)
    except ValueError as err:
        found = re.search(r"too small for its downsampling; the minimum is (\d+)", str(err))
        if found is None:
            raise
        need = int(found.group(1))
        assert need > min(shape[1:-1])  # the error must name a size that works
        return run((shape[0], *(need,) * (len(shape) - 2), shape[-1]))


@pytest.mark.parametrize("name,downsample,head", list(cases()))
def test_logits_shape(name, downsample, head):
    shape, kw = FAMILIES[name]
    # Training mode traces everything evaluation does plus BatchNorm updates and pool keys.
    logits, params = trace(name, shape, downsample=downsample, head=head, **kw)
    assert logits.shape == (2, 5) and logits.dtype == jnp.float32
    if name in EVERY_HEAD + EVERY_DOWNSAMPLE and head is not None:
        # The head's output width reaches the classifier: check the wiring per head.
        channels = {"resnet18": 64, "resnet20": 16}[name]
        final = {"resnet18": 1, "resnet20": 4}[name]
        width = {"catavgmax": 2 * channels, "spp": 21 * channels,
                 "flatten": final * final * channels}.get(head, channels)
        assert params["fc"]["kernel"].shape == (width, 5)


@pytest.mark.parametrize("downsample", downsample_names())
def test_downsample_length_rules_match_the_traced_shapes(downsample):
    # LeNet-5's flatten head exposes the map size after both downsampling points; it must
    # equal what the model's shape check predicts from the registry's length rule.
    def rule(length, channels):
        layer = nnx.eval_shape(lambda: make_downsample(
            downsample, Point(2, 2, 0, 2, channels, rngs=nnx.Rngs(0))))
        return layer.output_spatial((length, length))[0]

    side = rule(rule(32 - 4, 6) - 4, 16)
    _, params = trace("lenet5", (2, 32, 32, 1), downsample=downsample)
    assert params["C5"]["kernel"].shape == (side * side * 16, 120)


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("spatial_dims", [1, 3])
def test_sequences_and_volumes(name, spatial_dims):
    shape, kw = FAMILIES[name]
    n, side, channels = shape[0], shape[1], shape[-1]
    if spatial_dims == 3:
        n, side = 1, min(side, 32)
    x_shape = (n, *(side,) * spatial_dims, channels)
    choices = {} if spatial_dims == 1 else {"downsample": "avg", "head": "catavgmax"}
    logits, params = trace(name, x_shape, spatial_dims=spatial_dims, **choices, **kw)
    assert logits.shape == (n, 5)
    convs = {jax.tree_util.keystr(path): v.ndim
             for path, v in jax.tree_util.tree_flatten_with_path(params)[0]
             if path[-1].key == "kernel" and "Dense" not in str(path)}
    # N-d convs: kernels (*window, C_in, C_out); LeNet-1998's C3 keeps (*window, connections).
    table = {k for k in convs if "C3" in k and name == "lenet5_1998"}
    assert all(v == spatial_dims + 1 for k, v in convs.items() if k in table)
    assert sum(v == spatial_dims + 2 for k, v in convs.items() if k not in table) >= 1


def test_width_scales_every_family_down():
    for name, (shape, kw) in FAMILIES.items():
        if "width" not in kw or name == "resnet50":  # resnet18's stages, a costly full build
            continue
        full = trace(name, shape, **{**kw, "width": 1.0})[1]
        small = trace(name, shape, **kw)[1]
        size = lambda t: sum(math.prod(v.shape) for v in jax.tree.leaves(t))  # noqa: E731
        assert size(small) < size(full) / 8, name
