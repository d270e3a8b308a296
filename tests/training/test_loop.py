"""End-to-end runs of `train_and_evaluate` with a tiny CNN on digits (a few steps each)."""

import functools
import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TinyCNN
from flax import nnx

from poolnets.data import get_spec, load_split
from poolnets.training import TIMING_KEYS, ConfigError, train_and_evaluate
from poolnets.training.artifacts import Checkpoints
from poolnets.training.loop import evaluate, input_prefetch
from poolnets.training.optim import make_optimizer, make_schedule
from poolnets.training.state import create_train_state, merge
from poolnets.training.steps import eval_step, make_mesh, train_step


def _read_metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_tiny_run_learns_and_writes_artifacts(tmp_path, tiny_config, tiny_model, capsys):
    tiny_config.curves = True
    workdir = str(tmp_path / "run")
    summary = train_and_evaluate(tiny_config, workdir, model=tiny_model, show_progress=True)
    # the console says what happens before the first step, then shows progress
    out, err = capsys.readouterr()
    assert out.splitlines()[:2] == [
        "poolnets: preparing data: digits",
        "poolnets: compiling the train and eval steps of TinyCNN (5,354 params, batch 32)"]
    assert "12/12" in err and out.splitlines()[2].startswith("epoch 0.267  step 12  test_loss")

    assert sorted(os.listdir(workdir)) == [
        "checkpoints", "config.json", "curves.png", "metrics.jsonl", "summary.json",
        "tensorboard"]
    with open(os.path.join(workdir, "curves.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # checkpoint_every_steps=500 > 12 steps: only the final checkpoint
    assert os.listdir(os.path.join(workdir, "checkpoints")) == ["12"]
    with open(os.path.join(workdir, "summary.json")) as f:
        assert json.load(f) == json.loads(json.dumps(summary))
    for key in ("model", "dataset", "test_accuracy", "test_loss", "train_time_s", "steps",
                "params"):
        assert key in summary
    assert summary["steps"] == 12 and summary["dataset"] == "digits"
    # conv 5*5*1*8+8, BN scale+bias 2*8, dense (8*8*8)*10+10
    assert summary["params"] == 208 + 16 + 5130

    records = _read_metrics(workdir)
    train_logs = [r for r in records if "train_loss" in r]
    evals = [r for r in records if "test_loss" in r]
    assert [r["step"] for r in train_logs] == [4, 8, 12]
    assert all(r["grad_norm"] > 0 for r in train_logs)
    assert train_logs[-1]["train_loss"] < train_logs[0]["train_loss"]
    assert len(evals) == 1 and evals[0]["step"] == 12 and evals[0]["eval_s"] >= 0
    assert evals[0]["epoch"] == round(12 / (1442 // 32), 3)  # epochs completed
    # 12 steps of a tiny CNN already beat chance (10%) clearly (0.37 measured)
    assert summary["test_accuracy"] > 0.25
    assert summary["test_loss"] < np.log(10)

    # The checkpoint holds the final state: step 12, trained params, BatchNorm statistics.
    tx = make_optimizer("sgd", make_schedule("cosine", 0.1, 12, 0), weight_decay=5e-4)
    graphdef, target = create_train_state(tiny_model, tx, jax.random.key(123), (32, 32, 1))
    restored, step = Checkpoints(workdir, keep=3).restore_latest(target, tiny_config.to_dict())
    assert step == 12
    assert int(restored.step) == 12
    chex.assert_trees_all_equal_shapes(restored.params, target.params)
    assert restored.batch_stats
    # ... and evaluating it reproduces the run's final test figures.
    test = load_split("digits", "test", tiny_config.data_dir)
    eval_fn = jax.jit(functools.partial(eval_step, model=graphdef,
                                        preprocess_spec=get_spec("digits").preprocess))
    again = evaluate(eval_fn, restored, make_mesh(), test, 128)
    assert again["test_accuracy"] == summary["test_accuracy"]
    assert again["test_loss"] == pytest.approx(summary["test_loss"], rel=1e-6)


def test_same_seed_same_summary_whatever_the_batch_placement(tmp_path, tiny_config,
                                                             make_tiny_model):
    tiny_config.num_steps = 4
    model = make_tiny_model(use_batchnorm=False)  # also covers models without batch_stats
    assert input_prefetch(tiny_config) == 0  # CPU: host batches go straight to the step
    runs = []
    for name, prefetch in (("a", None), ("b", 2)):  # b: placed by Grain's thread, 2 ahead
        tiny_config.prefetch = prefetch
        runs.append(train_and_evaluate(tiny_config, str(tmp_path / name), model=model,
                                       show_progress=False))
    for summary in runs:
        for key in TIMING_KEYS:
            del summary[key]
        del summary["config"]["prefetch"]
    assert runs[0] == runs[1]  # bit-identical test_loss/test_accuracy, not just close


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("dataset", "svhn", r"'svhn'.*choices: cifar10, cifar100, digits"),
        ("optimizer", "lamb", r"'lamb'.*choices: sgd, adamw"),
        ("schedule", "linear", r"'linear'.*choices: cosine, constant, step"),
        ("schedule", "step", r"lr_decay_epochs=None"),
        ("learning_rate", -0.1, r"learning_rate=-0.1 must be a finite number > 0"),
        ("grad_clip_norm", 0.0, r"grad_clip_norm=0.0 must be None or a finite number > 0"),
        ("weight_decay", -1e-4, r"weight_decay=-0.0001 must be a finite number >= 0"),
        ("checkpoint_every_steps", 0, r"checkpoint_every_steps=0"),
        ("dtype", "int8", r"'int8'.*choices: float32"),
        ("batch_size", 0, r"batch_size=0"),
        ("batch_size", 5000, r"batch_size=5000 exceeds the 1442"),
        ("label_smoothing", 1.0, r"label_smoothing=1.0"),
    ],
)
def test_bad_config_raises_before_writing(tmp_path, tiny_config, tiny_model, field, value,
                                          match):
    tiny_config[field] = value
    workdir = tmp_path / "run"
    with pytest.raises(ConfigError, match=match):
        train_and_evaluate(tiny_config, str(workdir), model=tiny_model, show_progress=False)
    assert not workdir.exists()


def test_unwritable_workdir(tmp_path, tiny_config, tiny_model):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"workdir '.*a_file/run' is not writable"):
        train_and_evaluate(tiny_config, str(blocker / "run"), model=tiny_model,
                           show_progress=False)


class _RejectsItsArguments(nnx.Module):
    def __init__(self, *, rngs):
        pass

    def __call__(self, x, *, train=None):
        raise ValueError("width=-1 must be positive")


def test_model_argument_error_is_a_config_error(tmp_path, tiny_config):
    workdir = tmp_path / "run"
    with pytest.raises(ConfigError,
                       match=r"config.model='lenet5': width=-1 must be positive"):
        train_and_evaluate(tiny_config, str(workdir), model=_RejectsItsArguments,
                           show_progress=False)
    assert not workdir.exists()


def test_mocked_cifar10_trains_from_uint8_with_standard_augmentation(tmp_path, tiny_config,
                                                                     make_tiny_model):
    import tensorflow_datasets as tfds

    tiny_config.dataset = "cifar10"
    tiny_config.data_dir = str(tmp_path / "tfds")
    tiny_config.augment.max_shift = None  # CIFAR standard: pad-4 crop + flip
    tiny_config.num_steps = 3
    tiny_config.batch_size = 16
    tiny_config.eval_batch_size = 32
    with tfds.testing.mock_data(num_examples=40):
        summary = train_and_evaluate(tiny_config, str(tmp_path / "run"),
                                     model=make_tiny_model(in_channels=3), show_progress=False)
    assert summary["dataset"] == "cifar10" and summary["steps"] == 3
    assert np.isfinite(summary["test_loss"])
    # conv 5*5*3*8+8, BN 16, dense 8*8*8*10+10: 3-channel input reached the model
    assert summary["params"] == 608 + 16 + 5130


def test_bfloat16_compute_keeps_float32_params_and_optimizer_state():
    from poolnets.models import nnx as zoo

    build = functools.partial(zoo.create, "lenet5", num_classes=10, dtype=jnp.bfloat16)
    tx = make_optimizer("sgd", make_schedule("constant", 0.05, 2, 0), weight_decay=5e-4)
    model, state = create_train_state(build, tx, jax.random.key(0), (32, 32, 1))
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.random((8, 32, 32, 1)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 10, 8), jnp.int32)
    step = jax.jit(functools.partial(train_step, model=model, tx=tx, num_classes=10,
                                     label_smoothing=0.1))
    logits = merge(model, state)(images, train=False)
    assert logits.dtype == jnp.bfloat16
    new_state, metrics = step(state, images, labels, jax.random.key(1))
    for leaf in jax.tree.leaves((new_state.params, new_state.opt_state)):
        assert leaf.dtype in (jnp.float32, jnp.int32), leaf.dtype
    assert bool(metrics["finite"])
    moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.params, new_state.params)
    assert all(jax.tree.leaves(moved))


def _tensorboard_scalars(directory):
    """(tag, step) -> value from the event files under `directory` (TFRecord framing:
    u64 length, u32 crc, payload, u32 crc; payload an Event protobuf)."""
    import struct

    from tensorboardX.proto import event_pb2

    scalars = {}
    for path in sorted(directory.rglob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                scalars[(value.tag, event.step)] = value.simple_value
    return scalars


def test_tensorboard_events_and_profiler_trace(tmp_path, tiny_config, tiny_model):
    import pathlib

    tiny_config.profile_steps = 3
    workdir = pathlib.Path(tmp_path / "run")
    train_and_evaluate(tiny_config, str(workdir), model=tiny_model, show_progress=False)
    scalars = _tensorboard_scalars(workdir / "tensorboard")
    for record in _read_metrics(str(workdir)):
        for key in ("train_loss", "learning_rate", "test_accuracy", "test_loss"):
            if key in record:
                assert scalars[(key, record["step"])] == pytest.approx(record[key], rel=1e-6)
    assert {tag for tag, _ in scalars} >= {"train_loss", "train_accuracy", "grad_norm",
                                          "images_per_s", "test_loss", "test_accuracy"}
    traces = list((workdir / "profile").rglob("*.xplane.pb"))
    assert len(traces) == 1 and traces[0].stat().st_size > 0


class _Linear(nnx.Module):
    def __init__(self, *, rngs):
        self.dense = nnx.Linear(6, 4, rngs=rngs)

    def __call__(self, x, *, train=None):
        return self.dense(x.reshape(x.shape[0], -1))


def test_label_smoothing_loss_formula():
    smoothing = 0.2
    tx = make_optimizer("sgd", make_schedule("constant", 0.1, 2, 0))
    model, state = create_train_state(_Linear, tx, jax.random.key(0), (2, 3, 1))
    rng = np.random.default_rng(0)
    images = rng.normal(size=(5, 2, 3, 1)).astype(np.float32)
    labels = np.array([0, 3, 1, 1, 2], np.int32)
    _, metrics = train_step(state, jnp.asarray(images), jnp.asarray(labels), jax.random.key(1),
                            model=model, tx=tx, num_classes=4, label_smoothing=smoothing)
    logits = np.asarray(merge(model, state)(images, train=False), np.float64)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    targets = np.full((5, 4), smoothing / 4)
    targets[np.arange(5), labels] += 1 - smoothing
    assert float(metrics["loss"]) == pytest.approx(-(targets * log_p).sum(-1).mean(), rel=1e-5)


def test_consecutive_steps_draw_new_random_pool_masks():
    """The step returns the model's advanced RNG streams: a second step on the same batch
    and weights draws another stochastic-pool (and dropout) mask; eval draws nothing."""
    build = functools.partial(TinyCNN, use_batchnorm=False, pool="stochastic")
    tx = make_optimizer("sgd", make_schedule("constant", 0.0, 2, 0))  # lr 0: weights fixed
    model, state = create_train_state(build, tx, jax.random.key(0), (32, 32, 1))
    step = jax.jit(functools.partial(train_step, model=model, tx=tx, num_classes=10,
                                     label_smoothing=0.0))
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.random((4, 32, 32, 1)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 10, 4), jnp.int32)
    key = jax.random.key(1)
    first, m1 = step(state, images, labels, key)
    second, m2 = step(first.replace(step=state.step), images, labels, key)
    counts = [int(s.rngs["pool"]["rngs"]["count"]) for s in (state, first, second)]
    assert counts == [0, 1, 2]
    assert float(m1["loss"]) != float(m2["loss"])  # same weights, batch, step: new masks
    again, m3 = step(state, images, labels, key)
    assert float(m3["loss"]) == float(m1["loss"])  # the RNG state alone decides the masks


def test_a_module_instance_starts_from_its_own_state():
    """train_and_evaluate(model=<nnx.Module>) trains from the module's weights and RNG
    state, whatever the seed; a build is initialised from the key."""
    module = TinyCNN(rngs=nnx.Rngs(7))
    tx = make_optimizer("sgd", make_schedule("constant", 0.1, 2, 0))
    _, state = create_train_state(module, tx, jax.random.key(0), (32, 32, 1))
    chex.assert_trees_all_equal(state.params, nnx.to_pure_dict(nnx.state(module, nnx.Param)))
    _, built = create_train_state(TinyCNN, tx, jax.random.key(0), (32, 32, 1))
    assert not np.array_equal(built.params["conv"]["kernel"], state.params["conv"]["kernel"])
