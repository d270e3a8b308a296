"""The loop's periodic actions as hooks: when each acts and in which order, on numpy stand-ins
for the device state and metrics (no compilation)."""

import types

import numpy as np
import pytest

from poolnets.training import hooks, loop


def test_every_is_due_at_multiples_of_any_period_and_at_the_named_steps():
    due = hooks.Every(4, None, 6, 0, at=(13,))
    assert [s for s in range(1, 15) if due(s)] == [4, 6, 8, 12, 13]
    assert not any(hooks.Every(None, at=())(s) for s in range(1, 10))


def _metrics(step, finite=True):
    return {"loss": np.float32(step), "accuracy": np.float32(0.5), "grad_norm": np.float32(1.0),
            "finite": np.bool_(finite)}


def _fake_run(events, tmp_path, *, total, per_epoch, log_every, checkpoint_every):
    config = types.SimpleNamespace(log_every=log_every, checkpoint_every_steps=checkpoint_every,
                                   batch_size=8, eval_batch_size=16, profile_steps=0)
    checkpoints = types.SimpleNamespace(
        save=lambda step, state, data: events.append(("save", step, data)),
        last_good=lambda: "last good checkpoint: none")
    recipe = types.SimpleNamespace(total_steps=total, steps_per_epoch=per_epoch,
                                   schedule=lambda step: 0.1)
    return types.SimpleNamespace(config=config, recipe=recipe, checkpoints=checkpoints,
                                 eval_fn=None, mesh=None, test=None, workdir=str(tmp_path),
                                 resume_step=None)


def _drive(every_hook, steps, bad_step=None):
    state = np.zeros(2)
    for step in steps:
        for hook in every_hook:
            hook(step, state, _metrics(step, finite=step != bad_step))
    for hook in every_hook:
        hook.close(state)


def test_the_loops_hooks_log_then_evaluate_then_checkpoint(tmp_path, monkeypatch):
    """10 steps of 4 per epoch, a log every 3, a checkpoint every 5: a train record of each
    evaluation's and checkpoint's step before the evaluation's record and the save, a
    checkpoint after the evaluation of the same step, one evaluation at each epoch's end and
    at the last step, one checkpoint after the last."""
    events = []
    monkeypatch.setattr(loop, "evaluate", lambda eval_fn, state, **kw: (
        events.append(("eval",)) or {"test_loss": 1.0, "test_accuracy": 0.5}))
    run = _fake_run(events, tmp_path, total=10, per_epoch=4, log_every=3, checkpoint_every=5)
    record = lambda entry: events.append(("eval" if "test_loss" in entry else "log",  # noqa: E731
                                          entry["step"]))
    console = types.SimpleNamespace(advance=lambda n, entry: None, say=lambda line: None)
    every_hook = loop._make_hooks(run, record, console, lambda: {"iterator": "state"},
                                  hooks.Stopwatch())
    _drive(every_hook, range(1, 11))
    # step 4's evaluation runs at once; its record and step 4's follow once step 5 is queued
    assert events[:4] == [("log", 3), ("eval",), ("log", 4), ("eval", 4)]
    events = [e for e in events if e != ("eval",)]  # the evaluate call itself, then its record
    assert events == [
        ("log", 3), ("log", 4), ("eval", 4), ("log", 5), ("save", 5, {"iterator": "state"}),
        ("log", 6), ("log", 8), ("eval", 8), ("log", 9),
        ("log", 10), ("eval", 10), ("save", 10, {"iterator": "state"}),
    ]


def test_an_evaluation_of_a_diverged_step_is_never_recorded(tmp_path, monkeypatch):
    """Step 4 (an epoch's end) is NaN: its evaluation runs, but the run stops at step 5's
    first hook, when step 4's train record is written, before the evaluation's record."""
    events = []
    monkeypatch.setattr(loop, "evaluate", lambda eval_fn, state, **kw: (
        events.append(("eval",)) or {"test_loss": float("nan"), "test_accuracy": 0.1}))
    run = _fake_run(events, tmp_path, total=10, per_epoch=4, log_every=3, checkpoint_every=5)
    record = lambda entry: events.append(("eval" if "test_loss" in entry else "log",  # noqa: E731
                                          entry["step"]))
    console = types.SimpleNamespace(advance=lambda n, entry: None, say=lambda line: None)
    every_hook = loop._make_hooks(run, record, console, lambda: {}, hooks.Stopwatch())
    with pytest.raises(hooks.TrainingDiverged, match="NaN/Inf at step 4"):
        _drive(every_hook, range(1, 11), bad_step=4)
    assert ("log", 3) in events and ("eval", 4) not in events and ("log", 4) not in events


def test_log_averages_the_steps_since_the_last_record_written_after_the_next_step():
    """A record waits for the next step to be queued (no idle device while the host fetches
    and writes), except at the steps `at_once` names (a checkpoint follows)."""
    records, moved = [], []
    log = hooks.LogMetrics(hooks.Every(3), at_once=hooks.Every(None, at=(6,)), batch_size=8,
                           steps_per_epoch=4, learning_rate=lambda step: step / 100,
                           record=records.append, progress=lambda n, entry: moved.append(n),
                           last_good=lambda: "", clock=hooks.Stopwatch())
    _drive([log], range(1, 4))
    assert records == []  # step 3's record waits for step 4
    _drive([log], range(4, 7))
    assert [(r["step"], r["train_loss"], r["epoch"], r["learning_rate"]) for r in records] == [
        (3, 2.0, 0.75, 0.02), (6, 5.0, 1.5, 0.05)]
    assert moved == [3, 3] and all(r["images_per_s"] > 0 for r in records)


def test_the_first_non_finite_step_stops_the_run_at_the_next_record():
    log = hooks.LogMetrics(hooks.Every(4), at_once=hooks.Every(8), batch_size=8,
                           steps_per_epoch=4,
                           learning_rate=lambda step: 0.1, record=lambda entry: None,
                           progress=lambda n, entry: None,
                           last_good=lambda: "last good checkpoint: step 4",
                           clock=hooks.Stopwatch())
    with pytest.raises(hooks.TrainingDiverged,
                       match=r"NaN/Inf at step 6 \(loss 6.0, grad_norm 1.0\); last good "
                             r"checkpoint: step 4"):
        _drive([log], range(1, 9), bad_step=6)


def test_paused_time_is_not_train_time(monkeypatch):
    now = iter([0.0, 1.0, 3.0, 4.0, 4.0])  # start, pause, resume, elapsed, elapsed
    monkeypatch.setattr(hooks.time, "perf_counter", lambda: next(now))
    clock = hooks.Stopwatch()
    with clock.paused():
        pass
    assert clock.paused_s == 2.0 and clock.elapsed() == 2.0


def test_profile_traces_the_steps_after_the_first_two(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(hooks.jax.profiler, "start_trace", lambda d: calls.append(("start", d)))
    monkeypatch.setattr(hooks.jax.profiler, "stop_trace", lambda: calls.append(("stop",)))
    profile = hooks.Profile(str(tmp_path), num_steps=3, first_step=11)  # resumed at step 10
    state = np.zeros(1)
    for step in range(11, 20):
        calls.append(step)  # step `step` ran, then its hooks
        profile(step, state, None)
    # steps 13, 14, 15 run between start and stop
    assert calls == [11, 12, ("start", str(tmp_path / "profile")), 13, 14, 15, ("stop",),
                     16, 17, 18, 19]
    profile = hooks.Profile(str(tmp_path), num_steps=5, first_step=1)
    calls.clear()
    for step in range(1, 4):
        profile(step, state, None)
    profile.close(state)  # a run that ends inside the window stops the trace
    assert calls == [("start", str(tmp_path / "profile")), ("stop",)]
    hooks.Profile(str(tmp_path), num_steps=0, first_step=1)(2, state, None)
    assert len(calls) == 2
