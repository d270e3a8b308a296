"""Receptive fields: hand-computed chains, and the gradient support of linear conv stacks
(whose effective field fills exactly the analytic one)."""

import jax
import numpy as np
import pytest
from flax import nnx

from poolnets import pooling
from poolnets.analysis.receptive_field import (
    Layer,
    effective_receptive_field,
    mass_area,
    model_layers,
    receptive_fields,
    support_extent,
)
from poolnets.analysis.stages import pool_stack_layers
from poolnets.models import create, downsample_names


def test_hand_computed_chain():
    # conv3 -> pool2/2 -> conv3 -> pool2/2 -> conv3 (pad 1): sizes 3, 4, 8, 10, 18.
    layers = [Layer("c1", 3), Layer("p1", 2, 2), Layer("c2", 3), Layer("p2", 2, 2),
              Layer("c3", 3, 1, 1)]
    fields = receptive_fields(layers)
    assert [(f.size, f.jump) for f in fields] == [(1, 1), (3, 1), (4, 2), (8, 2), (10, 4),
                                                 (18, 4)]
    # Centres: 0.5 -> 1.5 -> 2.0 -> 4.0 -> 5.0 -> 5.0 (padding 1 shifts by -1 * jump 4, +4).
    assert [f.start for f in fields] == [0.5, 1.5, 2.0, 4.0, 5.0, 5.0]
    dilated = receptive_fields([Layer("d", 3, dilation=2), Layer("s", 3, stride=3)])
    assert [(f.size, f.jump) for f in dilated[1:]] == [(5, 1), (7, 3)]


def lenet_layers(downsample):
    model = nnx.eval_shape(lambda: create("lenet5", num_classes=10, downsample=downsample))
    return model_layers(model, (32, 32), upto="S4")


# LeNet-5's downsampling windows by hand (kernel, stride, left padding), from each pool's
# definition: output-size pools and LIP (its logit conv widens the field) have none.
_TWO_BY_TWO = ("max", "avg", "lp", "strided_conv", "stochastic", "gem", "lse", "soft",
               "median", "mixed", "mixed_random", "gated", "tree", "subsample", "wavelet")
BY_HAND = {**{n: [(2, 2, 0)] for n in _TWO_BY_TWO}, "none": [],
           "blur": [(3, 2, 1)],  # 3-tap binomial, stride 2, reflect padding 1
           "max_blur": [(2, 1, 0), (3, 2, 1)]}  # dense 2x2 max, then the blur


@pytest.mark.parametrize("downsample", downsample_names())
def test_lenet5_chain_is_read_from_its_layers(downsample):
    got = lenet_layers(downsample)
    if downsample not in BY_HAND:
        assert got is None
        return
    want = [(5, 1, 0)] + BY_HAND[downsample]
    want = want + want
    assert [(layer.kernel, layer.stride, layer.padding) for layer in got] == want


def test_lenet5_field():
    assert receptive_fields(lenet_layers("max"))[-1].size == 16  # 5 -> 6 -> 14 -> 16
    assert receptive_fields(lenet_layers("none"))[-1].size == 9
    assert receptive_fields(lenet_layers("blur"))[-1].size == 5 + 2 + 8 + 4
    assert lenet_layers("spectral") is None


def test_layer_errors():
    with pytest.raises(ValueError, match="stride"):
        Layer("x", 3, 0)
    with pytest.raises(ValueError, match="padding"):
        Layer("x", 3, 1, -1)


class LinearStack(nnx.Module):
    """Convolutions and average pools without nonlinearity: the input gradient of one unit is
    the composed (all-positive) kernel, nonzero exactly on the analytic field."""

    def __init__(self, pools: tuple, size: int, *, rngs):
        self.pools = pools
        c = 1
        for i, pool in enumerate(pools):
            setattr(self, f"conv{i}", nnx.Conv(c, 2, (3, 3), padding="VALID",
                                               kernel_init=nnx.initializers.ones, rngs=rngs))
            c, size = 2, (size - 2) // (2 if pool else 1)
        self.out = nnx.Linear(2 * size * size, 1, rngs=rngs)

    def __call__(self, x, train=None):
        for i, pool in enumerate(self.pools):
            x = getattr(self, f"conv{i}")(x)
            if pool:
                x = pooling.avg_pool(x, (2, 2))
        return self.out(x.reshape(x.shape[0], -1))


@pytest.mark.parametrize("pools", [(False, False), (True, False), (True, True)])
def test_effective_field_support_equals_analytic(pools):
    model = LinearStack(pools, 24, rngs=nnx.Rngs(1))
    x = jax.random.uniform(jax.random.key(0), (2, 24, 24, 1))
    layer = f"conv{len(pools) - 1}"
    heat = effective_receptive_field(model, x, layer)
    layers = []
    for i, pool in enumerate(pools):
        layers.append(Layer(f"conv{i}", 3))
        if pool and i < len(pools) - 1:
            layers.append(Layer(f"pool{i}", 2, 2))
    size = receptive_fields(layers)[-1].size
    assert support_extent(heat) == (size, size)
    assert np.isclose(heat.sum(), 1.0)


def test_mass_area():
    heat = np.zeros((5, 5))
    heat[2, 2], heat[2, 3], heat[0, 0] = 0.7, 0.2, 0.1
    assert mass_area(heat, 0.7) == 1 and mass_area(heat, 0.9) == 2 and mass_area(heat, 1) == 3
    assert mass_area(np.zeros((3, 3))) == 0
    with pytest.raises(ValueError, match="mass"):
        mass_area(heat, 0)


def test_pool_stack_layers():
    fields = receptive_fields(pool_stack_layers(4, 2))
    # conv3 p1 (3), pool (4, j2), conv3 (8), pool (10, j4), conv3 (18), conv3 (26).
    assert [f.size for f in fields[1:]] == [3, 4, 8, 10, 18, 26]
    # Pixel i spans [i, i + 1): 'SAME' convs keep the first centre, each 2x2/2 pool moves it
    # half a window: 0.5 -> 1.0 -> 2.0.
    assert [f.start for f in fields] == [0.5, 0.5, 1.0, 1.0, 2.0, 2.0, 2.0]
