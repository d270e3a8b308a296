"""Checkpoints, resume after SIGKILL, NaN stop, and checkpoints that must not be resumed."""

import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

import poolnets.training.loop as loop
from poolnets.data import Split, epoch_batches, pipeline
from poolnets.training import (
    TIMING_KEYS,
    CheckpointError,
    TrainingDiverged,
    train_and_evaluate,
)
from poolnets.training.artifacts import Checkpoints

HERE = pathlib.Path(__file__).resolve().parent

# A tiny run in a child process: 70 steps of 45 per epoch (so it crosses an epoch boundary
# and its evaluation), checkpoints every 10 steps. argv: conftest dir, workdir, data_dir,
# seconds of delay per batch (so the parent can kill it mid-run). The model draws dropout
# masks and stochastic-pool samples from its RNG streams, which checkpoints carry.
CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from conftest import TinyCNN, load_config
    import poolnets.training.loop as loop
    from poolnets.training import train_and_evaluate

    workdir, data_dir, delay = sys.argv[2], sys.argv[3], float(sys.argv[4])
    if delay:  # each batch placed on the devices late
        inner = loop.put_batch
        def slowed(*args):
            time.sleep(delay)
            return inner(*args)
        loop.put_batch = slowed
    config = load_config()
    config.data_dir = data_dir
    config.batch_size = 32
    config.num_steps = 70
    config.log_every = 5
    config.checkpoint_every_steps = 10
    config.learning_rate = 0.1
    config.warmup_epochs = 0.0
    config.curves = False
    # a stochastic pool and dropout: the resumed run must restore their RNG streams
    model = lambda rngs: TinyCNN(pool="stochastic", rngs=rngs)
    train_and_evaluate(config, workdir, model=model, show_progress=False)
    """
)


def _child(workdir, data_dir, delay=0.0):
    return [sys.executable, "-c", CHILD, str(HERE), str(workdir), data_dir, str(delay)]


def _steps(workdir):
    directory = pathlib.Path(workdir) / "checkpoints"
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def _comparable(workdir):
    summary = json.loads((pathlib.Path(workdir) / "summary.json").read_text())
    for key in TIMING_KEYS:
        del summary[key]
    records = [json.loads(line) for line in
               (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()]
    records = [{k: v for k, v in r.items() if k not in ("images_per_s", "eval_s")}
               for r in records if "resumed_from_step" not in r]
    return summary, records


def test_sigkill_mid_epoch_then_restart_equals_uninterrupted_run(tmp_path, digits_dir):
    from poolnets.data import digits

    digits.prepare(digits_dir)
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    done = subprocess.run(_child(whole, digits_dir), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr

    child = subprocess.Popen(_child(broken, digits_dir, delay=0.05),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not _steps(broken) or _steps(broken)[-1] < 20:
        assert child.poll() is None, child.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=60) == -signal.SIGKILL
    child.stderr.close()
    killed_at = _steps(broken)
    assert not (broken / "summary.json").exists()
    assert 20 <= killed_at[-1] < 70 and killed_at[-1] % 45, killed_at  # mid-epoch

    again = subprocess.run(_child(broken, digits_dir), capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    resumed = json.loads((broken / "summary.json").read_text())
    assert resumed["timing"]["resumed_from_step"] == killed_at[-1]
    # Same final numbers, and the same per-step log (train losses bit for bit).
    assert _comparable(broken) == _comparable(whole)
    assert _steps(broken) == _steps(whole) == [50, 60, 70]  # keep_checkpoints=3


@pytest.fixture
def saved_run(tmp_path, tiny_config, tiny_model):
    """A finished 12-step run with checkpoints at 4, 8, 12."""
    tiny_config.checkpoint_every_steps = 4
    workdir = tmp_path / "run"
    train_and_evaluate(tiny_config, str(workdir), model=tiny_model, show_progress=False)
    assert _steps(workdir) == [4, 8, 12]
    return workdir


def _tree_digest(directory):
    digest = hashlib.sha256()
    for path in sorted(pathlib.Path(directory).rglob("*")):
        digest.update(str(path.relative_to(directory)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_corrupt_newest_checkpoint_is_set_aside_and_the_one_before_resumed(
        saved_run, tiny_config, tiny_model, capfd):
    tiny_config.checkpoint_every_steps = 4
    victims = [p for p in (saved_run / "checkpoints" / "12").rglob("*") if p.is_file()
               and p.stat().st_size > 0 and "ocdbt" in str(p)]
    assert victims
    for path in victims:
        path.write_bytes(b"\0garbage" * 8)
    bad = _tree_digest(saved_run / "checkpoints" / "12")
    capfd.readouterr()
    summary = train_and_evaluate(tiny_config, str(saved_run), model=tiny_model,
                                 show_progress=False)
    assert summary["timing"]["resumed_from_step"] == 8 and summary["steps"] == 12
    [line] = capfd.readouterr().err.strip().splitlines()
    moved = saved_run / "unrestorable-checkpoints" / "12"
    assert line.startswith(f"poolnets: skipped checkpoint {saved_run}/checkpoints/12: cannot "
                           "be restored ("), line
    assert line.endswith(f"moved to {moved}; resuming from step 8"), line
    assert _tree_digest(moved) == bad  # the bad one kept as it was, out of the way
    assert _steps(saved_run) == [4, 8, 12]  # step 12 written again by the resumed run


def test_checkpoint_of_another_model_config_worker_count_or_format_is_refused(
        saved_run, tiny_config, make_tiny_model):
    tiny_config.checkpoint_every_steps = 4
    before = _tree_digest(saved_run)
    other = make_tiny_model(use_batchnorm=False)
    with pytest.raises(CheckpointError, match=r"checkpoints/12 cannot be restored"):
        train_and_evaluate(tiny_config, str(saved_run), model=other, show_progress=False)
    tiny_config.learning_rate = 0.2
    with pytest.raises(CheckpointError, match=r"different config \(fields learning_rate\)"):
        train_and_evaluate(tiny_config, str(saved_run), model=make_tiny_model(),
                           show_progress=False)
    assert _tree_digest(saved_run) == before
    tiny_config.learning_rate = 0.03  # the run's (conftest)
    tiny_config.data.workers = 2  # Grain's iterator state depends on the worker count
    with pytest.raises(CheckpointError) as error:
        train_and_evaluate(tiny_config, str(saved_run), model=make_tiny_model(),
                           show_progress=False)
    assert str(error.value) == (
        f"checkpoint {saved_run}/checkpoints/12 was written with config.data.workers=0 and "
        "Grain's iterator state depends on the worker count; resume with "
        "config.data.workers=0 (now 2)")
    assert _tree_digest(saved_run) == before
    tiny_config.data.workers = 0
    for step in (4, 8, 12):  # as written before the input iterator was checkpointed
        shutil.rmtree(saved_run / "checkpoints" / str(step) / "data")
    with pytest.raises(CheckpointError, match=r"^checkpoint \S+/checkpoints/12 has no "
                                              r"input-pipeline state \(written before poolnets "
                                              r"read data with Grain\), so .*fresh --workdir$"):
        train_and_evaluate(tiny_config, str(saved_run), model=make_tiny_model(),
                           show_progress=False)
    assert _steps(saved_run) == [4, 8, 12]  # refused before anything was written


def test_nan_stops_at_the_exact_step_keeping_the_last_good_checkpoint(
        tmp_path, tiny_config, tiny_model, monkeypatch):
    real_load = loop.load_data

    def poisoned(config, plan, data_dir):
        train, test = real_load(config, plan, data_dir)
        # one NaN pixel in an example of the 10th batch of epoch 0 -> step 10 is not finite
        batches = epoch_batches(Split(train.images, np.arange(len(train))), 32, seed=0, epoch=0)
        victim = [labels for _, labels in batches][9][5]
        images = train.images.astype(np.float32)  # uint8 grey levels cannot hold a NaN
        images[victim, 16, 16, 0] = np.nan
        return Split(images, train.labels), Split(test.images.astype(np.float32), test.labels)

    monkeypatch.setattr(loop, "load_data", poisoned)
    monkeypatch.setitem(pipeline.DATASETS, "digits",  # the steps then take float32 levels
                        dataclasses.replace(pipeline.DATASETS["digits"], stored_dtype="float32"))
    tiny_config.checkpoint_every_steps = 4
    tiny_config.log_every = 3
    workdir = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"NaN/Inf at step 10 .*last good checkpoint: "
                                               r"step 8"):
        train_and_evaluate(tiny_config, str(workdir), model=tiny_model, show_progress=False)
    assert _steps(workdir) == [4, 8]
    assert not (workdir / "summary.json").exists()
    target = _any_state(tiny_config, tiny_model)  # its values do not matter
    restored, step = Checkpoints(str(workdir), 3).restore_latest(target, tiny_config.to_dict())
    assert step == 8 and int(restored.step) == 8
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(restored.params))
    logged = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [3, 4, 6, 8, 9]  # nothing from step 10 on


def _any_state(config, model):
    from poolnets.training.optim import make_optimizer, make_schedule
    from poolnets.training.state import create_train_state

    tx = make_optimizer("sgd", make_schedule("cosine", 0.1, 12, 0), weight_decay=5e-4)
    return create_train_state(model, tx, jax.random.key(0), (32, 32, 1))[1]


def test_checkpoints_keep_the_newest_and_saves_do_not_count_as_train_time(
        tmp_path, tiny_config, tiny_model, monkeypatch):
    real_save, pause = Checkpoints.save, 1.5

    def slow_first_save(self, step, state, data):
        if step == 2:
            time.sleep(pause)
        real_save(self, step, state, data)

    monkeypatch.setattr(Checkpoints, "save", slow_first_save)
    tiny_config.checkpoint_every_steps = 2
    tiny_config.keep_checkpoints = 2
    summary = train_and_evaluate(tiny_config, str(tmp_path / "run"), model=tiny_model,
                                 show_progress=False)
    assert _steps(tmp_path / "run") == [10, 12]
    # steps 3-4 (64 images) follow the save at 2: counting the pause would give < 43 img/s
    logged = [json.loads(line) for line in
              (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    rates = {r["step"]: r["images_per_s"] for r in logged if "images_per_s" in r}
    assert sorted(rates) == [2, 4, 6, 8, 10, 12]
    assert min(rates.values()) > 2 * 64 / pause, rates
    assert summary["timing"]["checkpoint_s"] >= pause
    assert not [p for p in os.listdir(tmp_path / "run" / "checkpoints") if "tmp" in p]
