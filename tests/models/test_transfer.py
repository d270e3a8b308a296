"""Transfer-learning pieces: head replacement, backbone freezing, frozen BatchNorm."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from nnx_zoo_helpers import concrete

from poolnets import models
from poolnets.models.nnx.convert import load_linen, to_linen
from poolnets.models.transfer import (
    freeze_backbone,
    freeze_batch_stats,
    head_of,
    init_from_checkpoint,
    load_pretrained,
    param_labels,
    transfer_variables,
)
from poolnets.weights.checkpoint import save_variables

X = jnp.asarray(np.random.default_rng(0).standard_normal((2, 32, 32, 3)), jnp.float32)


def small(name: str, num_classes: int, **kw):
    """The abstract (`nnx.eval_shape`) model `name` at width 1/8."""
    kw = {"width": 0.125, **({"hidden": 256} if name.startswith("vgg") else {}), **kw}
    return nnx.eval_shape(lambda: models.create(name, num_classes=num_classes, **kw))


def init(abstract, seed: int = 0):
    """Random Linen-layout variables {"params", "batch_stats"} in the structure of the
    abstract model, with non-trivial running statistics; drawn host-side (compiling an
    init or per-leaf jax.random costs seconds)."""
    rng = np.random.default_rng(seed)
    tree, _ = to_linen(nnx.to_pure_dict(nnx.state(abstract, nnx.Param)),
                       nnx.to_pure_dict(nnx.state(abstract, nnx.BatchStat)))

    def draw(path, leaf):
        if path[-1].key == "var":
            return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
        scale = np.sqrt(2.0 / np.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 0.3
        return (scale * rng.standard_normal(leaf.shape)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, tree)


def leaves_equal(a, b) -> bool:
    return jax.tree.all(jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), a, b))


def test_transfer_keeps_backbone_and_takes_new_head():
    pretrained = init(small("resnet18", 7), seed=1)
    target = init(small("resnet18", 3), seed=2)
    out = transfer_variables(pretrained, target, head_of("resnet18"))
    assert jax.tree.structure(out) == jax.tree.structure(target)
    assert out["params"]["fc"]["kernel"].shape == (64, 3)
    assert leaves_equal(out["params"]["fc"], target["params"]["fc"])
    backbone = {k: v for k, v in out["params"].items() if k != "fc"}
    assert leaves_equal(backbone, {k: pretrained["params"][k] for k in backbone})
    assert leaves_equal(out["batch_stats"], pretrained["batch_stats"])


def test_transfer_rejects_another_backbone():
    pretrained = init(small("resnet18", 7), seed=1)
    target = init(small("resnet18", 3, width=0.25))
    with pytest.raises(ValueError, match=r"conv1/kernel: pretrained \(3, 3, 8, 8\), model "
                                         r"\(3, 3, 16, 16\).*\(100 in all\)"):
        transfer_variables(pretrained, target, ("fc",))
    with pytest.raises(ValueError, match="no known classifier head"):
        head_of("lenet5")


def test_frozen_backbone_updates_only_the_head():
    variables = init(small("vgg11_bn", 3))
    params = variables["params"]
    labels = param_labels(params, head_of("vgg11_bn"))
    assert {k for k, v in labels.items() if set(jax.tree.leaves(v)) == {"head"}} == {
        "classifier"}
    tx = freeze_backbone(optax.sgd(0.1, momentum=0.9), head_of("vgg11_bn"))
    state = tx.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    updates, state = tx.update(grads, state, params)
    new = optax.apply_updates(params, updates)
    for name in params:
        changed = not leaves_equal(new[name], params[name])
        assert changed == (name == "classifier"), name
    momentum_leaves = sum(x.size for x in jax.tree.leaves(state))
    assert momentum_leaves == sum(x.size for x in jax.tree.leaves(params["classifier"]))


def small_nnx(name: str, num_classes: int, seed: int = 0, **kw):
    """`small(...)` made concrete, holding the host-drawn variables of `init` (positive
    running variances), loaded through the Linen<->NNX path map."""
    abstract = small(name, num_classes, **kw)
    model = concrete(abstract)  # real RNG streams
    load_linen(model, init(abstract, seed))
    return model


@pytest.mark.parametrize("name", ["resnet18", "vgg11_bn"])
def test_frozen_batch_norm_is_eval_normalisation_in_training(name):
    """Under train=True (dropout off to compare) BN uses and keeps its running statistics."""
    model = small_nnx(name, 3, **({"dropout": 0.0} if name.startswith("vgg") else {}))
    stats = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
    graphdef, params, rest = nnx.split(nnx.clone(model), nnx.Param, ...)
    frozen_graphdef, _, _ = nnx.split(freeze_batch_stats(nnx.clone(model)), nnx.Param, ...)
    rest = nnx.to_pure_dict(rest)

    @jax.jit
    def run(params):
        def loss(p):
            net = nnx.merge(frozen_graphdef, p, rest)
            out = net(X, train=True)
            return jnp.sum(out**2), (out, nnx.to_pure_dict(nnx.state(net, nnx.BatchStat)))

        grads, (got, kept) = jax.grad(loss, has_aux=True)(params)
        free = nnx.merge(graphdef, params, rest)
        moved_out = free(X, train=True)
        moved = nnx.to_pure_dict(nnx.state(free, nnx.BatchStat))
        want = nnx.merge(graphdef, params, rest)(X, train=False)
        return want, grads, got, kept, moved_out, moved

    want, grads, got, kept, free, moved = run(nnx.to_pure_dict(params))
    atol = 1e-6 * float(jnp.abs(want).max())
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=atol)
    assert leaves_equal(kept, stats)
    bn = "stem_bn" if name.startswith("resnet") else "bn0"
    assert float(jnp.abs(grads[bn]["scale"]).sum()) > 0  # scale and bias still train
    # Without the freeze, training mode normalises by batch statistics and moves them.
    assert not np.allclose(free, want)
    assert not leaves_equal(moved, stats)


def test_load_pretrained_from_orbax_directory(tmp_path):
    variables = jax.tree.map(np.asarray, init(small("resnet18", 3)))
    path = save_variables(tmp_path / "converted", variables)
    assert leaves_equal(load_pretrained("resnet18", path), variables)
    with pytest.raises(ValueError, match="is not a file"):
        load_pretrained("resnet18", tmp_path / "nothing.pth")


def test_init_from_checkpoint_replaces_backbone_of_a_train_state(tmp_path):
    from poolnets.training.state import TrainState

    pretrained = jax.tree.map(np.asarray, init(small("resnet18", 1000), seed=1))
    path = save_variables(tmp_path / "converted", pretrained)
    fresh = small_nnx("resnet18", 10, seed=2)  # an NNX train state, its own paths
    params = nnx.to_pure_dict(nnx.state(fresh, nnx.Param))
    stats = nnx.to_pure_dict(nnx.state(fresh, nnx.BatchStat))
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=stats,
                       rngs={}, opt_state=())
    out = init_from_checkpoint(state, "resnet18", path)
    assert leaves_equal(out.params["fc"], params["fc"])
    assert not leaves_equal(out.params["stem_conv"], params["stem_conv"])
    assert leaves_equal(out.params["stem_conv"], pretrained["params"]["stem_conv"])
    assert leaves_equal(out.batch_stats, pretrained["batch_stats"])


@pytest.mark.slow
def test_finetune_config_end_to_end_on_synthetic_data(tmp_path):
    """configs/finetune_resnet18.py with init_from a converted torchvision file (safetensors),
    backbone and BatchNorm statistics frozen: after 2 steps only the new head has moved."""
    import importlib.util
    import pathlib

    import orbax.checkpoint as ocp
    from safetensors.numpy import save_file

    from poolnets.models.nnx.pretrained import torchvision_layout
    from poolnets.training import train_and_evaluate
    from poolnets.weights.synthetic import synthetic_state_dict
    from poolnets.weights.torchvision import convert_torchvision, expected_shapes

    root = pathlib.Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("ft", root / "configs" / "finetune_resnet18.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    weights = synthetic_state_dict(
        expected_shapes("resnet18", functools.partial(torchvision_layout, "resnet18")), seed=3)
    save_file(weights, str(tmp_path / "resnet18.safetensors"))
    config.init_from = str(tmp_path / "resnet18.safetensors")
    config.freeze_backbone = True
    config.dataset = "synthetic"
    config.synthetic.image_shape = (32, 32, 3)
    config.synthetic.num_train, config.synthetic.num_test = 16, 8
    config.batch_size = config.eval_batch_size = 8
    config.num_steps, config.warmup_epochs, config.learning_rate = 2, 0.0, 0.5
    config.tensorboard = False
    train_and_evaluate(config, str(tmp_path / "run"), show_progress=False)

    step_dir = tmp_path / "run" / "checkpoints" / "2"
    item = step_dir / "default"  # the model state; "data" holds the input iterator
    with ocp.StandardCheckpointer() as checkpointer:
        final = checkpointer.restore(item)
    pretrained = convert_torchvision(
        "resnet18", weights, functools.partial(torchvision_layout, "resnet18"))
    for name, subtree in final["params"].items():
        same = leaves_equal(subtree, pretrained["params"][name]) if name != "fc" else False
        assert same == (name != "fc"), name
    assert final["params"]["fc"]["kernel"].shape == (512, 10)
    assert leaves_equal(final["batch_stats"], pretrained["batch_stats"])
