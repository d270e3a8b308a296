"""The training loop's periodic actions as hooks: log, evaluate, checkpoint, profile.

The loop calls every hook after every train step as `hook(step, state, metrics)` (step
1-based, the number of steps done; state and metrics as the step returned them, still on
device) and `hook.close(state)` once at the end, also when the run stops on an error. A
`Periodic` hook acts when its `Every` says the step is due; what it does takes the time it
takes, so the loop body stays the same whatever the hooks. Hooks run in the order given:
the loop passes log, evaluate, checkpoint, profile, so a checkpoint at step s is written
after every record of steps <= s, and a trace starts or stops between steps.

Train-phase time (images_per_s, the summary's train_loop_s) is kept by a `Stopwatch`: the
evaluation and checkpoint hooks run inside `Stopwatch.paused()`, so their time is not
counted as training.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np

PROFILE_DIR = "profile"
# Steps before the trace starts: the first calls can include one-off work (transfers, warm-up).
PROFILE_AFTER = 2


class TrainingDiverged(RuntimeError):
    """The loss or the gradients became NaN/Inf; the message names the first such step."""


class Stopwatch:
    """Wall time since creation less the time spent inside `paused()` blocks."""

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self.paused_s = 0.0

    def elapsed(self) -> float:
        """Seconds since creation, the paused ones excluded."""
        return time.perf_counter() - self._start - self.paused_s

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        begin = time.perf_counter()
        try:
            yield
        finally:
            self.paused_s += time.perf_counter() - begin


class Every:
    """When a periodic action is due: at every multiple of any of `periods` (0 or None:
    never) and at each step of `at` (e.g. the last one)."""

    def __init__(self, *periods: int | None, at: tuple[int, ...] = ()):
        self.periods = tuple(p for p in periods if p)
        self.at = frozenset(at)

    def __call__(self, step: int) -> bool:
        return step in self.at or any(step % p == 0 for p in self.periods)


class Deferred:
    """Host writes put off until the next train step is queued (the device then computes
    while the host writes). The hooks of a loop share one, so records stay in step order:
    each hook first does the writes put off at earlier steps (`flush(before=step)`), and a
    write that a checkpoint must follow is done at once (`flush()`). A write that raises (a
    diverged run) stops the ones after it."""

    def __init__(self) -> None:
        self._writes: list[tuple[int, Callable[[], None]]] = []

    def add(self, step: int, write: Callable[[], None]) -> None:
        self._writes.append((step, write))

    def flush(self, before: int | None = None) -> None:
        """Does the writes put off at steps < `before` (None: all of them), in order."""
        while self._writes and (before is None or self._writes[0][0] < before):
            _, write = self._writes.pop(0)
            write()


class Hook:
    """Called after every train step; `close` once at the end of the run."""

    def __call__(self, step: int, state: Any, metrics: Any) -> None:
        raise NotImplementedError

    def close(self, state: Any) -> None:
        del state


class Periodic(Hook):
    """A hook that acts (`run(step, state)`) at the steps `due` names."""

    def __init__(self, due: Callable[[int], bool]):
        self.due = due

    def __call__(self, step: int, state: Any, metrics: Any) -> None:
        if self.due(step):
            self.run(step, state)

    def run(self, step: int, state: Any) -> None:
        raise NotImplementedError


class LogMetrics(Hook):
    """Collects every step's metrics and, when due, fetches them in one transfer, stops at
    the first non-finite step, and writes one record: the means of loss, accuracy and
    grad_norm since the last record, the learning rate and the images/s of that train-phase
    stretch.

    The fetch waits for the step, so at a due step it is deferred to the next call, when
    the next step is already queued behind it: the device is not left idle while the host
    fetches and writes (the loop's only host sync besides evaluations). Where
    `at_once(step)` (a step whose checkpoint must follow its record) it is written at once.
    record(entry) writes the record (metrics.jsonl, TensorBoard); progress(n, entry) moves
    the console's progress bar by n steps; last_good() says which checkpoint holds the last
    good state, for the divergence message.
    """

    def __init__(self, due: Callable[[int], bool], *, at_once: Callable[[int], bool],
                 batch_size: int, steps_per_epoch: int,
                 learning_rate: Callable[[int], Any], record: Callable[[dict], None],
                 progress: Callable[[int, dict], None], last_good: Callable[[], str],
                 clock: Stopwatch, later: Deferred | None = None):
        self.due, self.at_once = due, at_once
        self.batch_size, self.steps_per_epoch = batch_size, steps_per_epoch
        self.learning_rate, self.record, self.progress = learning_rate, record, progress
        self.last_good, self.clock = last_good, clock
        self.later = Deferred() if later is None else later
        self.pending: list[Any] = []
        self.since = clock.elapsed()

    def __call__(self, step: int, state: Any, metrics: Any) -> None:
        self.later.flush(before=step)
        self.pending.append(metrics)
        if self.due(step):
            self.later.add(step, functools.partial(self.write, step, self.pending))
            self.pending = []
            if self.at_once(step):
                self.later.flush()

    def write(self, step: int, steps_metrics: list[Any]) -> None:
        """Writes the record of `step` from the metrics of the steps up to it."""
        jax.block_until_ready(steps_metrics[-1])  # one wait: the steps finish in order
        # np.asarray per leaf: far less host time than jax.device_get for many scalars
        logged = jax.tree.map(np.asarray, steps_metrics)
        train_s = self.clock.elapsed() - self.since  # the steps' time, not this logging's
        first = step - len(logged) + 1
        for i, m in enumerate(logged):
            if not m["finite"]:
                raise TrainingDiverged(
                    f"loss or gradients became NaN/Inf at step {first + i} "
                    f"(loss {float(m['loss'])}, grad_norm {float(m['grad_norm'])}); "
                    f"{self.last_good()}")
        entry = {
            "step": step,
            "epoch": round(step / self.steps_per_epoch, 3),
            "train_loss": float(np.mean([m["loss"] for m in logged])),
            "train_accuracy": float(np.mean([m["accuracy"] for m in logged])),
            "grad_norm": float(np.mean([m["grad_norm"] for m in logged])),
            "learning_rate": float(self.learning_rate(step - 1)),
            "images_per_s": round(len(logged) * self.batch_size / train_s, 1),
        }
        self.record(entry)
        self.progress(len(logged), entry)
        self.since = self.clock.elapsed()


class Evaluate(Periodic):
    """When due, waits for the queued train steps (train time), then evaluates
    (`evaluate(state) -> {"test_loss", "test_accuracy"}`) outside the train phase; `results`
    holds every result, in order. Its record (with eval_s) and console line are put off
    (`later`) until the next train step is queued, so the device does not wait for the
    host's writes; where `at_once(step)` (a checkpoint follows) they are written at once."""

    def __init__(self, due: Callable[[int], bool], evaluate: Callable[[Any], dict], *,
                 at_once: Callable[[int], bool], steps_per_epoch: int,
                 record: Callable[[dict], None], say: Callable[[str], None], clock: Stopwatch,
                 later: Deferred | None = None):
        super().__init__(due)
        self.evaluate, self.at_once, self.steps_per_epoch = evaluate, at_once, steps_per_epoch
        self.record, self.say, self.clock = record, say, clock
        self.later = Deferred() if later is None else later
        self.results: list[dict] = []

    def __call__(self, step: int, state: Any, metrics: Any) -> None:
        self.later.flush(before=step)
        super().__call__(step, state, metrics)

    def run(self, step: int, state: Any) -> None:
        jax.block_until_ready(state)  # so eval_s does not include queued train steps
        with self.clock.paused():
            begin = time.perf_counter()
            result = {"step": step, "epoch": round(step / self.steps_per_epoch, 3),
                      **self.evaluate(state)}
            result["eval_s"] = round(time.perf_counter() - begin, 3)
        self.results.append(result)
        self.later.add(step, functools.partial(self.write, result))
        if self.at_once(step):
            self.later.flush()

    def write(self, result: dict) -> None:
        """Records `result` and says it on the console."""
        self.record(result)
        self.say(f"epoch {result['epoch']:g}  step {result['step']}  "
                 f"test_loss {result['test_loss']:.4f}  "
                 f"test_accuracy {result['test_accuracy']:.4f}  "
                 f"eval_s {result['eval_s']:.1f}")

    def eval_s(self) -> float:
        return sum(r["eval_s"] for r in self.results)


class Checkpoint(Periodic):
    """When due, saves `state` with the input pipeline's state `data_state()` through
    `save(step, state, data)`, outside the train phase; `seconds` sums the saves' time."""

    def __init__(self, due: Callable[[int], bool], save: Callable[[int, Any, dict], None],
                 data_state: Callable[[], dict], clock: Stopwatch):
        super().__init__(due)
        self.save, self.data_state, self.clock = save, data_state, clock
        self.seconds = 0.0

    def run(self, step: int, state: Any) -> None:
        begin = time.perf_counter()
        with self.clock.paused():
            self.save(step, state, self.data_state())
        self.seconds += time.perf_counter() - begin


class Profile(Hook):
    """Traces steps first_step + PROFILE_AFTER onwards, `num_steps` of them, with
    `jax.profiler` into workdir/profile (num_steps 0: never); the trace opens in
    TensorBoard's profile plugin or Perfetto. It starts after the step before the first
    traced one and stops after the last traced one, each once the device is idle."""

    def __init__(self, workdir: str, num_steps: int, first_step: int):
        self.directory = os.path.join(workdir, PROFILE_DIR)
        self.start = first_step + PROFILE_AFTER  # the first step traced
        self.stop = self.start + num_steps  # the first step not traced
        self.enabled = num_steps > 0
        self.active = False

    def __call__(self, step: int, state: Any, metrics: Any) -> None:
        if not self.enabled:
            return
        if step + 1 == self.start and not self.active:
            jax.block_until_ready(state)
            jax.profiler.start_trace(self.directory)
            self.active = True
        elif step + 1 == self.stop and self.active:
            self.close(state)

    def close(self, state: Any) -> None:
        if self.active:
            jax.block_until_ready(state)
            jax.profiler.stop_trace()
            self.active = False
