"""Every configs/*.py: documented, valid, and its model takes its dataset's images."""

import pathlib

import jax.numpy as jnp
import pytest
from conftest import ROOT, load_config
from flax import nnx

import poolnets.nnx as pnnx
from poolnets.training.config import ConfigError, check_config
from poolnets.training.loop import create_model

NAMES = sorted(p.stem for p in (ROOT / "configs").glob("*.py"))


def test_the_issue_configs_exist():
    for name in ("default", "lenet5_mnist", "vgg16_bn_cifar10", "resnet20_cifar10",
                 "resnet56_cifar10", "resnet110_cifar10", "resnet18_cifar10",
                 "allcnn_c_cifar10", "resnet50_imagenet", "resnet50_imagenette",
                 "synthetic_lenet5", "synthetic_resnet20", "synthetic_vgg16_bn",
                 "synthetic_allcnn_c", "synthetic_resnet18", "synthetic_resnet50"):
        assert name in NAMES


@pytest.mark.parametrize("name", NAMES)
def test_config_is_documented_valid_and_fits_its_model(name):
    doc = pathlib.Path(ROOT / "configs" / f"{name}.py").read_text().split('"""')[1]
    for heading in ("Command:", "Hardware:"):
        assert heading in doc
    assert "Expected:" in doc or "Result:" in doc
    if "Result:" not in doc:  # figures not measured here must say so
        assert "not run here" in doc or "synthetic" in doc
    config = load_config(name)
    plan = check_config(config, num_devices=1)
    build = create_model(config, plan.num_classes, plan.image_shape)
    out = nnx.eval_shape(lambda: build(rngs=nnx.Rngs(0))(jnp.zeros((2, *plan.image_shape)),
                                                          train=False))
    assert out.shape == (2, plan.num_classes)


def test_every_field_has_a_documented_meaning():
    from poolnets.training.defaults import base_config, field_docs

    def names(config, prefix=""):
        for key, value in config.items():
            yield prefix + key
            if hasattr(value, "items"):
                yield from names(value, f"{prefix}{key}.")

    docs = field_docs()
    assert [name for name in names(base_config()) if not docs.get(name, "").strip()] == []


def test_image_too_small_for_the_model_is_a_config_error(tmp_path):
    from poolnets.training import train_and_evaluate

    config = load_config("synthetic_lenet5")
    config.synthetic.image_shape = (8, 8, 1)  # 8 -conv5-> 4 -pool-> 2: no room for conv 2
    with pytest.raises(ConfigError, match=r"config.model='lenet5': .*"):
        train_and_evaluate(config, str(tmp_path / "run"), show_progress=False)
    assert not (tmp_path / "run").exists()


def test_downsample_sweep_is_one_override_away():
    config = load_config("resnet20_cifar10")
    config.model.downsample = "avg"
    check_config(config, num_devices=1)
    config.model.downsample = "nope"
    with pytest.raises(ConfigError, match=r"config.model.downsample='nope'.*choices: avg"):
        check_config(config, num_devices=1)


def test_distributed_settings_need_all_three_fields(monkeypatch):
    from poolnets.training.setup import initialize_distributed

    config = load_config()
    assert initialize_distributed(config) is False  # nothing set: one process
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "127.0.0.1:1")
    monkeypatch.delenv("JAX_NUM_PROCESSES", raising=False)
    with pytest.raises(ConfigError, match=r"'127.0.0.1:1' needs num_processes and process_id"):
        initialize_distributed(config)


def test_every_model_option_reaches_create():
    config = load_config("resnet18_cifar10")
    config.model.width, config.model.downsample_blocks = 0.5, True
    check_config(config, num_devices=1)
    def built(image_shape):
        return nnx.eval_shape(lambda: create_model(config, 10, image_shape)(rngs=nnx.Rngs(0)))

    model = built((32, 32, 3))
    assert model.feature_info[0]["channels"] == 32  # width 0.5 of 64
    pools = [n for _, n in nnx.iter_graph(model) if isinstance(n, pnnx.MaxPool)]
    assert len(pools) > 1  # the stem's, and the residual blocks' (downsample_blocks)
    assert len(model.input_size) == 2
    config.model.spatial_dims = 1  # reaches create; the data decides whether it can train
    assert len(built((32, 3)).input_size) == 1


@pytest.mark.parametrize(
    ("name", "field", "value", "message"),
    [
        ("default", "downsample_blocks", True,
         r"downsample_blocks=True does not apply to 'lenet5'; choices: None, or a model that "
         r"has it: resnet101, resnet152, resnet18, resnet34, resnet50$"),
        ("default", "spatial_dims", 1,
         r"spatial_dims=1 does not fit the \(32, 32, 1\) .* of 'digits'; choices: None or 2$"),
        ("default", "width", 0.0, r"config.model.width=0.0 must be None or a finite number > 0"),
        ("default", "spatial_dims", 4, r"spatial_dims=4 must be None or an integer in \[1, 3\]"),
    ],
)
def test_model_options_are_checked_before_anything_runs(name, field, value, message):
    config = load_config(name)
    config.model[field] = value
    with pytest.raises(ConfigError, match=message):
        check_config(config, num_devices=1)


def test_a_model_without_width_names_the_models_with_it():
    config = load_config()
    config.model.name, config.model.width = "lenet5_1998", 2.0
    with pytest.raises(ConfigError, match=r"width=2.0 does not apply to 'lenet5_1998'; "
                                          r"choices: None, or a model that has it: allcnn_c, "):
        check_config(config, num_devices=1)
