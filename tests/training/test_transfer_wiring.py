"""The loop's fine-tuning fields (init_from, freeze_backbone, freeze_batch_stats) reach
`poolnets.models.transfer` as configs/finetune_resnet18.py expects."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import load_config
from flax import nnx, traverse_util

from poolnets.models import transfer
from poolnets.models.nnx.convert import to_linen
from poolnets.training.config import ConfigError
from poolnets.training.loop import create_model
from poolnets.training.optim import make_optimizer
from poolnets.training.setup import apply_transfer, init_from
from poolnets.training.state import create_train_state


def test_init_from_and_freezing(tmp_path):
    from poolnets.weights.checkpoint import save_variables

    config = load_config("synthetic_resnet20")
    tx = make_optimizer("sgd", optax.constant_schedule(0.1))
    _, pretrained = create_train_state(create_model(config, 10, (32, 32, 3)), tx, jax.random.key(0),
                                       (32, 32, 3))
    linen, _ = to_linen(pretrained.params, pretrained.batch_stats)  # as converted weights are
    path = save_variables(tmp_path / "pretrained", linen)
    config.synthetic.num_classes = 7
    config.init_from = path
    config.freeze_backbone = True
    config.freeze_batch_stats = True
    build, frozen_tx = apply_transfer(config, create_model(config, 7, (32, 32, 3)), tx)
    norms = [n for _, n in nnx.iter_graph(build(rngs=nnx.Rngs(0)))
             if isinstance(n, nnx.BatchNorm)]
    assert norms and all(isinstance(n, transfer.FrozenBatchNorm) for n in norms)
    _, fresh = create_train_state(build, frozen_tx, jax.random.key(5), (32, 32, 3))
    state = init_from(config, fresh)

    new = traverse_util.flatten_dict(state.params, sep="/")
    old = traverse_util.flatten_dict(pretrained.params, sep="/")
    start = traverse_util.flatten_dict(fresh.params, sep="/")
    heads = [k for k in new if k.startswith("fc/")]
    assert heads and new["fc/kernel"].shape[-1] == 7
    for k in new:
        np.testing.assert_array_equal(new[k], start[k] if k in heads else old[k])
    ones = jax.tree.map(jnp.ones_like, state.params)
    updates, _ = frozen_tx.update(ones, frozen_tx.init(state.params), state.params)
    for k, u in traverse_util.flatten_dict(updates, sep="/").items():
        assert bool(jnp.any(u != 0)) == (k in heads), k


def test_freeze_backbone_of_a_model_without_a_known_head_is_a_config_error():
    config = load_config()
    config.freeze_backbone = True
    with pytest.raises(ConfigError, match=r"config.freeze_backbone=True: .*'lenet5'"):
        apply_transfer(config, None, optax.sgd(0.1))


def test_unreadable_init_from_is_a_config_error(tmp_path):
    config = load_config("synthetic_resnet20")
    config.init_from = str(tmp_path / "missing.pth")
    _, state = create_train_state(create_model(config, 10, (32, 32, 3)), optax.sgd(0.1),
                                  jax.random.key(0),
                                  (32, 32, 3))
    with pytest.raises(ConfigError, match=r"config.init_from='.*missing.pth'"):
        init_from(config, state)
