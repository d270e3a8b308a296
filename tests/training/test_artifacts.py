"""Workdir artifacts at unit level: a full disk, corrupt checkpoints, messages."""

import asyncio
import errno
import hashlib
import json
import logging
import pathlib
import sys
import types

import jax.numpy as jnp
import pytest

from poolnets.training import artifacts
from poolnets.training.artifacts import CheckpointError, Checkpoints, WriteError

STATE = {"w": jnp.arange(3.0), "b": jnp.ones((2,))}
CONFIG = {"learning_rate": 0.1}


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", "/simulated/file")


def _digest(directory):
    digest = hashlib.sha256()
    for path in sorted(pathlib.Path(directory).rglob("*")):
        digest.update(str(path.relative_to(directory)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _saved(workdir, steps):
    checkpoints = Checkpoints(str(workdir), keep=5)
    checkpoints.write_config(CONFIG)
    for step in steps:
        checkpoints.save(step, {k: v + step for k, v in STATE.items()})
    checkpoints.close()
    return Checkpoints(str(workdir), keep=5)


def _corrupt(workdir, step):
    victims = [p for p in (workdir / "checkpoints" / str(step)).rglob("*")
               if p.is_file() and p.stat().st_size > 0 and "ocdbt" in str(p)]
    assert victims
    for path in victims:
        path.write_bytes(b"\0garbage" * 8)


def test_full_disk_at_checkpoint_save_is_one_line_and_leaves_no_complete_looking_step(
        tmp_path, monkeypatch, caplog):
    from orbax.checkpoint._src.path import async_path

    checkpoints = _saved(tmp_path, [1])
    async def full(path, text):
        _full_disk()
    monkeypatch.setattr(async_path, "write_text", full)
    with caplog.at_level(logging.INFO), pytest.raises(WriteError) as error:
        checkpoints.save(2, STATE)
    message = str(error.value)
    assert message.startswith(f"cannot write checkpoint {tmp_path}/checkpoints/2 (OSError: "
                              "[Errno 28] No space left on device"), message
    assert "\n" not in message
    # orbax's own logged tracebacks for this failure are not shown (ours says it all)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert checkpoints.steps() == [1]  # step 2 kept its temporary name
    monkeypatch.undo()
    restored, step = Checkpoints(str(tmp_path), 5).restore_latest(STATE, CONFIG)
    assert step == 1 and float(restored["b"][0]) == 2.0


def test_full_disk_at_summary_write_keeps_the_old_file_and_no_temporary(tmp_path,
                                                                         monkeypatch):
    path = tmp_path / "summary.json"
    path.write_text('{"old": true}')
    monkeypatch.setattr(artifacts.os, "fsync", _full_disk)
    with pytest.raises(WriteError, match=rf"cannot write {path} \(OSError: \[Errno 28\] No "
                                         "space left on device"):
        artifacts.write_json_atomic(str(path), {"new": True})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]
    assert json.loads(path.read_text()) == {"old": True}


def test_full_disk_at_metrics_write(tmp_path):
    writer = artifacts.MetricsWriter(str(tmp_path))
    writer._file = types.SimpleNamespace(write=_full_disk, flush=lambda: None)
    with pytest.raises(WriteError, match=r"metrics.jsonl \(OSError: \[Errno 28\]"):
        writer.write({"step": 1})


def test_corrupt_newest_checkpoint_falls_back_and_is_set_aside_unchanged(tmp_path):
    checkpoints = _saved(tmp_path, [1, 2, 3])
    _corrupt(tmp_path, 3)
    bad = _digest(tmp_path / "checkpoints" / "3")
    before = _digest(tmp_path)
    restored, step = checkpoints.restore_latest(STATE, CONFIG)
    assert step == 2 and float(restored["b"][0]) == 3.0
    assert [s for s, _ in checkpoints.skipped] == [3]
    assert _digest(tmp_path) == before  # restoring touches nothing
    [note] = checkpoints.set_aside_skipped()
    moved = tmp_path / "unrestorable-checkpoints" / "3"
    assert note.startswith(f"skipped checkpoint {tmp_path}/checkpoints/3: cannot be restored (")
    assert note.endswith(f"moved to {moved}") and "\n" not in note
    assert _digest(moved) == bad and checkpoints.steps() == [2, 1]


def test_no_checkpoint_restores_or_config_differs_is_an_error_touching_nothing(tmp_path):
    checkpoints = _saved(tmp_path, [1, 2])
    _corrupt(tmp_path, 2)
    before = _digest(tmp_path)
    # a config change is an error even when an older checkpoint would restore
    with pytest.raises(CheckpointError, match=r"checkpoints/2 was written with a different "
                                              r"config \(fields learning_rate\)"):
        checkpoints.restore_latest(STATE, {"learning_rate": 0.2})
    assert _digest(tmp_path) == before
    _corrupt(tmp_path, 1)
    before = _digest(tmp_path)
    with pytest.raises(CheckpointError, match=r"checkpoints/2 cannot be restored \(.*\), nor "
                                              r"can the 1 older ones; they were left untouched"):
        checkpoints.restore_latest(STATE, CONFIG)
    assert _digest(tmp_path) == before


def test_last_good_says_when_there_is_no_checkpoint(tmp_path):
    checkpoints = Checkpoints(str(tmp_path), keep=3)
    assert checkpoints.last_good().startswith("no checkpoint was written yet in ")
    (tmp_path / "checkpoints" / "8").mkdir(parents=True)
    (tmp_path / "checkpoints" / "9.orbax-checkpoint-tmp").mkdir()
    assert checkpoints.last_good() == f"last good checkpoint: step 8 in {tmp_path}/checkpoints"


def test_closed_loop_echo_of_a_failed_orbax_call_is_dropped_and_nothing_else(monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    artifacts._drop_closed_loop_echoes()
    loop = asyncio.new_event_loop()
    loop.close()
    try:
        loop.call_soon_threadsafe(print)  # what a late tensorstore callback does
    except RuntimeError as e:
        echo = e
    other = RuntimeError("Event loop is closed")  # the same text raised elsewhere
    for error in (echo, other):
        sys.unraisablehook(types.SimpleNamespace(exc_value=error,
                                                 exc_traceback=error.__traceback__))
    assert [u.exc_value for u in seen] == [other]
