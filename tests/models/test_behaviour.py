"""Numerical behaviour: jit + grad, bfloat16 compute, BatchNorm modes, RNG streams, errors,
and LeNet-5 (1998)'s connection table and squashing function."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from poolnets.models import create
from poolnets.models.lenet import C3_TABLE, TableConv, squash

# RBG keys: XLA compiles threefry-based initialisers very slowly on CPU (~5x here).
RNGS = {s: jax.random.key(i, impl="rbg") for i, s in enumerate(("params", "dropout", "pool"))}


def key(seed):
    return jax.random.key(seed, impl="rbg")


def small(name, **kw):
    return create(name, num_classes=4, **kw)


def grads_of_cross_entropy(model, x, y):
    variables = jax.jit(model.init)(RNGS, x)

    def loss(params):
        logits, _ = model.apply({**variables, "params": params}, x, train=True,
                                mutable=["batch_stats"], rngs=RNGS)
        return -jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1).mean()

    return jax.jit(jax.grad(loss))(variables["params"])


@pytest.mark.parametrize("name,channels,kw", [
    ("resnet18", 3, {"width": 0.125, "downsample": "avg", "downsample_blocks": True,
                     "stage_sizes": (1, 1, 1, 1)}),
    ("lenet5", 1, {"downsample": "stochastic", "head": "catavgmax"}),
])
def test_jit_and_grad_reach_every_parameter(name, channels, kw):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 32, 32, channels)), jnp.float32)
    grads = grads_of_cross_entropy(small(name, **kw), x, jnp.array([0, 1, 2, 3]))
    leaves = jax.tree.leaves(grads)
    assert all(bool(jnp.isfinite(g).all()) for g in leaves)
    # Every parameter gets a gradient (no layer is silently cut off).
    assert all(float(jnp.abs(g).max()) > 0 for g in leaves)


def test_bfloat16_compute_with_float32_params():
    model = small("resnet20", depth=8, width=0.25, dtype=jnp.bfloat16, head="catavgmax")
    x = jnp.ones((2, 8, 8, 3), jnp.float32)
    variables = jax.jit(model.init)(RNGS, x)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables["params"]))
    logits = jax.jit(model.apply)(variables, x)
    assert logits.dtype == jnp.bfloat16 and logits.shape == (2, 4)
    full = create("resnet20", num_classes=4, depth=8, width=0.25, head="catavgmax")
    reference = jax.jit(full.apply)(variables, x)
    np.testing.assert_allclose(logits.astype(np.float32), reference, rtol=0.1, atol=0.1)


def test_batchnorm_statistics_move_in_training_only():
    model = small("resnet20", depth=8, width=0.25)
    x = jnp.asarray(np.random.default_rng(1).normal(2.0, 3.0, size=(2, 8, 8, 3)), jnp.float32)
    variables = jax.jit(model.init)(RNGS, x)
    apply = jax.jit(model.apply, static_argnames=("train", "mutable"))
    _, trained = apply(variables, x, train=True, mutable=("batch_stats",), rngs=RNGS)
    _, evaluated = apply(variables, x, train=False, mutable=("batch_stats",))
    before = jax.tree.leaves(variables["batch_stats"])
    assert all(np.array_equal(a, b) for a, b in
               zip(before, jax.tree.leaves(evaluated["batch_stats"]), strict=True))
    assert all(not np.allclose(a, b) for a, b in
               zip(before, jax.tree.leaves(trained["batch_stats"]), strict=True))


def test_same_keys_same_outputs_and_other_keys_differ():
    model = small("allcnn_c", width=0.125, downsample="stochastic")
    x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 16, 16, 3)), jnp.float32)
    variables = jax.jit(model.init)(RNGS, x)
    again = jax.jit(model.init)(RNGS, x)
    assert all(np.array_equal(a, b) for a, b in
               zip(jax.tree.leaves(variables), jax.tree.leaves(again), strict=True))

    @jax.jit
    def run(dropout, pool):
        rngs = {"dropout": key(dropout), "pool": key(pool)}
        return model.apply(variables, x, train=True, rngs=rngs)

    base = run(0, 0)
    np.testing.assert_array_equal(base, run(0, 0))
    assert not np.allclose(base, run(1, 0)) and not np.allclose(base, run(0, 1))
    evaluation = jax.jit(model.apply)(variables, x)  # no RNG needed in evaluation
    np.testing.assert_array_equal(evaluation, jax.jit(model.apply)(variables, x))


@pytest.mark.parametrize("kwargs,error,match", [
    ({"name": "resnet19"}, ValueError, "choices"),
    ({"downsample": "maxx"}, ValueError, "choices"),
    ({"head": "mean"}, ValueError, "choices"),
    ({"num_classes": 0}, ValueError, "num_classes"),
    ({"num_classes": -3}, ValueError, "num_classes"),
    ({"num_classes": 2.5}, ValueError, "num_classes"),
    ({"num_classes": True}, ValueError, "num_classes"),
    ({"widht": 0.5}, TypeError, "widht"),
    ({"dtype": "float8"}, ValueError, "dtype='float8'"),
    ({"dtype": jnp.int32}, ValueError, "dtype=.*int32"),
    ({"dtype": None}, ValueError, "dtype=None"),
])
def test_bad_create_arguments(kwargs, error, match):
    args = {"name": "resnet20", "num_classes": 10, **kwargs}
    with pytest.raises(error, match=match):
        create(args.pop("name"), **args)


@pytest.mark.parametrize("name,shape,overrides,match", [
    ("vgg16", (1, 16, 16, 3), {}, "minimum is 32"),
    ("lenet5", (1, 15, 40, 1), {}, "minimum is 16"),
    ("allcnn_c", (1, 4, 4, 3), {}, "minimum is 9"),
    ("vgg11", (1, 32, 32, 3), {"downsample": "none", "width": 0.125}, None),
    ("lenet5", (1, 32, 32), {}, "spatial dims"),
    ("resnet18", (1, 32, 32, 3), {"spatial_dims": 4}, "spatial_dims"),
    ("resnet18", (1, 32, 32, 3), {"width": 0}, "width"),
    ("resnet21", (1, 32, 32, 3), {}, "choices"),
])
def test_bad_inputs_fail_before_tracing(name, shape, overrides, match):
    model = create(name, num_classes=3, **overrides) if name != "resnet21" else None
    if model is None:
        with pytest.raises(ValueError, match=match):
            create(name, num_classes=3)
        return
    x = jnp.zeros(shape)
    if match is None:  # "none" keeps the resolution, so 32 is far from the limit
        assert jax.eval_shape(model.init, RNGS, x) is not None
        return
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(model.init, RNGS, x)


def test_cifar_resnet_depth_must_be_6n_plus_2():
    model = create("resnet20", num_classes=3, depth=21)
    with pytest.raises(ValueError, match="6n"):
        jax.eval_shape(model.init, RNGS, jnp.zeros((1, 8, 8, 3)))


def test_wrong_channel_count_for_existing_parameters():
    model = small("resnet20", width=0.25)
    variables = jax.eval_shape(model.init, RNGS, jnp.zeros((1, 8, 8, 3)))
    with pytest.raises(ValueError, match="1 channels but the model's parameters expect 3"):
        jax.eval_shape(model.apply, variables, jnp.zeros((1, 8, 8, 1)))


def test_dtype_is_checked_by_the_module_too():
    # A family built directly (not through create) checks at init, before any layer.
    from poolnets.models.lenet import LeNet5
    with pytest.raises(ValueError, match="lenet5: dtype must be a floating dtype"):
        jax.eval_shape(LeNet5(dtype=jnp.int8).init, RNGS, jnp.zeros((1, 32, 32, 1)))


def test_flatten_head_parameters_fix_the_input_size_even_with_a_symbolic_batch():
    model = create("lenet5", num_classes=3)
    variables = jax.eval_shape(model.init, RNGS, jax.ShapeDtypeStruct((1, 32, 32, 1),
                                                                       jnp.float32))

    def apply(shape):
        return jax.eval_shape(model.apply, variables, jax.ShapeDtypeStruct(
            jax.export.symbolic_shape(shape), jnp.float32))

    # Any input whose final map is 5x5 fits (32..35); the batch dim stays symbolic.
    assert str(apply("b, 35, 35, 1").shape) == "(b, 3)"
    with pytest.raises(ValueError, match=r"lenet5: the head gives 576 features for input "
                                         r"spatial size \(36, 36\), but the parameters' 'C5' "
                                         r"layer takes 400.* fit inputs of 32 to 35 per "
                                         r"spatial dim \(final map 5x5\)"):
        apply("b, 36, 36, 1")


def test_flatten_head_size_error_in_another_family():
    model = small("resnet20", depth=8, width=0.25, head="flatten")
    variables = jax.eval_shape(model.init, RNGS, jnp.zeros((1, 8, 8, 3)))
    with pytest.raises(ValueError, match=r"cifar_resnet: .* 'fc' layer takes 64.* 5 to 8 per"):
        jax.eval_shape(model.apply, variables, jnp.zeros((1, 16, 16, 3)))


@pytest.mark.parametrize("head", ["flatten", "attention"])
def test_empty_batch_gives_empty_logits(head):
    model = small("lenet5", head=head)
    variables = jax.eval_shape(model.init, RNGS, jnp.zeros((1, 32, 32, 1)))
    assert jax.eval_shape(model.apply, variables, jnp.zeros((0, 32, 32, 1))).shape == (0, 4)


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
    conv = TableConv(C3_TABLE, 6, (5, 5))
    x = jnp.asarray(np.random.default_rng(3).normal(size=(1, 9, 9, 6)), jnp.float32)
    params = conv.init(jax.random.key(0), x)
    jac = jax.jacobian(lambda x: conv.apply(params, x).sum(axis=(0, 1, 2)))(x)  # (16, x)
    reads = np.abs(np.asarray(jac)).sum(axis=(1, 2, 3)).T > 0  # (6 inputs, 16 outputs)
    np.testing.assert_array_equal(reads, expected)


def test_lenet_1998_squashing_function():
    # Appendix A: f(a) = 1.7159 tanh(2a/3), chosen so that f(1) = 1 and f(-1) = -1.
    np.testing.assert_allclose(squash(jnp.array([1.0, -1.0, 0.0])), [1, -1, 0], atol=2e-4)
