"""Cost analysis: XLA's FLOP count of a convolution against the closed form, parameter counts
against LeNet-5's published total, activation sizes against hand-computed shapes."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from poolnets.analysis import cost
from poolnets.models import nnx as zoo


@pytest.mark.parametrize("seed", range(3))
def test_conv_flops_match_formula(seed):
    # XLA counts one multiply and one add per tap: 2 * H_out * W_out * C_in * C_out * k * k.
    rng = np.random.default_rng(seed)
    h, w, cin, cout, k = (int(v) for v in rng.integers([6, 6, 1, 1, 1], [14, 14, 6, 9, 5]))
    conv = nn.Conv(cout, (k, k), padding="VALID", use_bias=False)
    x = jax.ShapeDtypeStruct((1, h, w, cin), jnp.float32)
    variables = jax.eval_shape(lambda: conv.init(jax.random.key(0), jnp.zeros(x.shape)))
    got = cost.xla_cost(lambda v, x: conv.apply(v, x), variables, x)
    assert got["flops"] == 2 * (h - k + 1) * (w - k + 1) * cin * cout * k * k
    # Bytes accessed at least read the input and kernel and write the output (float32).
    assert got["bytes_accessed"] >= 4 * (h * w * cin + k * k * cin * cout
                                         + (h - k + 1) * (w - k + 1) * cout)


def test_forward_cost_is_per_image():
    class Wrap(nnx.Module):
        def __init__(self, rngs):
            self.c = nnx.Conv(2, 3, (3, 3), padding="VALID", use_bias=False, rngs=rngs)

        def __call__(self, x, train=None):
            return self.c(x)

    model = Wrap(nnx.Rngs(0))
    one = cost.forward_cost(model, (8, 8, 2), batch=1)
    four = cost.forward_cost(model, (8, 8, 2), batch=4)
    assert one["flops"] == four["flops"] == 2 * 6 * 6 * 2 * 3 * 9
    with pytest.raises(ValueError, match="batch"):
        cost.forward_cost(model, (8, 8, 2), batch=0)


def test_lenet5_params_and_activations():
    model = nnx.eval_shape(lambda: zoo.create("lenet5", num_classes=10))
    x = jax.ShapeDtypeStruct((1, 32, 32, 1), jnp.float32)
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    per_layer = cost.params_per_layer(params)
    # 5*5*1*6+6, 5*5*6*16+16, 400*120+120, 120*84+84, 84*10+10 (61,706 in total).
    assert per_layer == {"C1": 156, "C3": 2416, "C5": 48120, "F6": 10164, "output": 850}
    assert cost.total_params(params) == 61706
    sizes = cost.activation_sizes(model, x)
    assert sizes["C1"] == 28 * 28 * 6 and sizes["S2"] == 14 * 14 * 6
    assert sizes["C3"] == 10 * 10 * 16 and sizes["S4"] == 5 * 5 * 16
    assert sizes["output"] == 10  # the classifier's logits
    assert cost.peak_activation(model, x) == ("C1", 4704)
