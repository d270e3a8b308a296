"""Numerical behaviour: grad through train mode, bfloat16 compute, BatchNorm modes, errors,
and LeNet-5 (1998)'s connection table and squashing function.

Concrete models are abstract builds given host-drawn values (`concrete`): Flax's
initialisers run op by op cost seconds each on this CPU."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from nnx_zoo_helpers import abstract, concrete

from poolnets.models import create
from poolnets.models.nnx.lenet import C3_TABLE, LeNet5, TableConv, squash


def small(name, **kw):
    kw.setdefault("num_classes", 4)
    return concrete(abstract(name, **kw))


@pytest.mark.parametrize("name,channels,kw", [
    ("resnet18", 3, {"width": 0.125, "downsample": "avg", "downsample_blocks": True,
                     "stage_sizes": (1, 1, 1, 1), "input_size": 32}),
    ("lenet5", 1, {"downsample": "stochastic", "head": "catavgmax"}),
])
def test_grad_in_train_mode_reaches_every_parameter(name, channels, kw):
    model = small(name, **kw)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 32, 32, channels)), jnp.float32)
    y = jnp.array([0, 1, 2, 3])
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    @jax.jit
    def grads(params, rest):
        def loss(p, r):  # the train step's shape: state in, BatchStat/RNG updates out
            net = nnx.merge(graphdef, p, r)
            logits = net(x, train=True)
            xent = -jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1).mean()
            return xent, nnx.state(net, nnx.BatchStat)

        return jax.grad(loss, has_aux=True)(params, rest)[0]

    leaves = jax.tree.leaves(grads(nnx.to_pure_dict(params), nnx.to_pure_dict(rest)))
    assert all(bool(jnp.isfinite(g).all()) for g in leaves)
    # Every parameter gets a gradient (no layer is silently cut off).
    assert all(float(jnp.abs(g).max()) > 0 for g in leaves)


def test_bfloat16_compute_is_close_to_float32_with_the_same_parameters():
    kw = dict(depth=8, width=0.25, head="catavgmax", input_size=8)
    model = small("resnet20", dtype=jnp.bfloat16, **kw)
    full = abstract("resnet20", num_classes=4, **kw)
    nnx.update(full, nnx.state(model))
    x = jnp.ones((2, 8, 8, 3), jnp.float32)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    run = jax.jit(lambda s, g: nnx.merge(g, s)(x), static_argnums=1)
    g16, s16 = nnx.split(model)
    g32, s32 = nnx.split(full)
    logits, reference = run(s16, g16), run(s32, g32)
    assert logits.dtype == jnp.bfloat16 and logits.shape == (2, 4)
    assert reference.dtype == jnp.float32
    np.testing.assert_allclose(logits.astype(np.float32), reference, rtol=0.1, atol=0.1)


def test_batchnorm_statistics_move_in_training_only():
    model = small("resnet20", depth=8, width=0.25, input_size=8)
    x = jnp.asarray(np.random.default_rng(1).normal(2.0, 3.0, size=(2, 8, 8, 3)), jnp.float32)
    graphdef, state = nnx.split(model)

    def after_a_call(state, train):
        m = nnx.merge(graphdef, state)
        m(x, train=train)
        return nnx.to_pure_dict(nnx.state(m, nnx.BatchStat))  # the values after this call

    @jax.jit
    def stats_after(state):
        return after_a_call(state, False), after_a_call(state, True)

    before = jax.tree.leaves(nnx.to_pure_dict(nnx.state(model, nnx.BatchStat)))
    evaluated, trained = map(jax.tree.leaves, stats_after(state))
    assert all(np.array_equal(a, b) for a, b in zip(before, evaluated, strict=True))
    assert all(not np.allclose(a, b) for a, b in zip(before, trained, strict=True))


@pytest.mark.parametrize("kwargs,error,match", [
    ({"name": "resnet19"}, ValueError, "Choices"),
    ({"downsample": "maxx"}, ValueError, "Choices"),
    ({"head": "mean"}, ValueError, "Choices"),
    ({"num_classes": 0}, ValueError, "num_classes"),
    ({"num_classes": -3}, ValueError, "num_classes"),
    ({"num_classes": 2.5}, ValueError, "num_classes"),
    ({"num_classes": True}, ValueError, "num_classes"),
    ({"widht": 0.5}, TypeError, "widht"),
    ({"dtype": "float8"}, ValueError, "dtype='float8'"),
    ({"dtype": jnp.int32}, ValueError, "dtype=.*int32"),
    ({"dtype": None}, ValueError, "dtype=None"),
    ({"spatial_dims": 4}, ValueError, "spatial_dims=4"),
    ({"width": 0}, ValueError, "width=0"),
    ({"depth": 21}, ValueError, "6n"),
])
def test_bad_create_arguments_fail_when_built(kwargs, error, match):
    args = {"name": "resnet20", "num_classes": 10, **kwargs}
    with pytest.raises(error, match=match):
        nnx.eval_shape(lambda: create(args.pop("name"), **args))


@pytest.mark.parametrize("name,shape,overrides,match", [
    ("vgg16", (1, 16, 16, 3), {"width": 1 / 16}, "minimum is 32"),
    ("lenet5", (1, 15, 40, 1), {}, "minimum is 16"),
    ("allcnn_c", (1, 4, 4, 3), {"width": 0.1}, "minimum is 9"),
    ("vgg11", (1, 32, 32, 3), {"downsample": "none", "width": 0.125}, None),
    ("lenet5", (1, 32, 32), {}, "2 spatial dims"),
    ("resnet20", (1, 8, 8, 1), {"width": 0.25}, "C=3 channels; got shape"),
])
def test_bad_inputs_fail_before_tracing(name, shape, overrides, match):
    model = abstract(name, num_classes=3, **overrides)
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    if match is None:  # "none" keeps the resolution, so 32 is far from the limit
        assert nnx.eval_shape(lambda m, x: m(x), model, x).shape == (1, 3)
        return
    with pytest.raises(ValueError, match=match):
        nnx.eval_shape(lambda m, x: m(x), model, x)


def test_dtype_is_checked_by_the_family_too():
    # A family built directly (not through create) checks before any layer.
    with pytest.raises(ValueError, match="lenet5: dtype must be a floating dtype"):
        nnx.eval_shape(lambda: LeNet5(num_classes=3, dtype=jnp.int8, rngs=nnx.Rngs(0)))


def test_flatten_head_size_error_in_another_family():
    model = abstract("resnet20", num_classes=3, depth=8, width=0.25, head="flatten",
                     input_size=8)
    with pytest.raises(ValueError, match=r"cifar_resnet: its Flatten head was built for "
                                         r"input_size=\(8, 8\).*with input_size=\(16, 16\)"):
        nnx.eval_shape(lambda m, x: m(x), model, jax.ShapeDtypeStruct((1, 16, 16, 3),
                                                                       jnp.float32))


@pytest.mark.parametrize("head", ["flatten", "attention"])
def test_empty_batch_gives_empty_logits(head):
    model = abstract("lenet5", num_classes=4, head=head)
    out = nnx.eval_shape(lambda m, x: m(x), model, jax.ShapeDtypeStruct((0, 32, 32, 1),
                                                                         jnp.float32))
    assert out.shape == (0, 4)


def test_lenet_1998_c3_reads_exactly_its_connection_table():
    # Table I of LeCun et al. 1998, transcribed as rows = S2 maps, columns = C3 maps.
    paper = ["X   XXX  XXXX XX",
             "XX   XXX  XXXX X",
             "XXX   XXX  X XXX",
             " XXX  XXXX  X XX",
             "  XXX  XXXX XX X",
             "   XXX  XXXX XXX"]
    expected = np.array([[c == "X" for c in row] for row in paper])
    assert expected.sum() == 60
    conv = TableConv(C3_TABLE, 6, (5, 5), rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(3).normal(size=(1, 9, 9, 6)), jnp.float32)
    jac = jax.jacobian(lambda x: conv(x).sum(axis=(0, 1, 2)))(x)  # (16, x)
    reads = np.abs(np.asarray(jac)).sum(axis=(1, 2, 3)).T > 0  # (6 inputs, 16 outputs)
    np.testing.assert_array_equal(reads, expected)


def test_lenet_1998_squashing_function():
    # Appendix A: f(a) = 1.7159 tanh(2a/3), chosen so that f(1) = 1 and f(-1) = -1.
    np.testing.assert_allclose(squash(jnp.array([1.0, -1.0, 0.0])), [1, -1, 0], atol=2e-4)
