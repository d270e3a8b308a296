"""TensorBoard event files (via tensorboardX, no TensorFlow), the optional profiler trace,
and curves.png, a picture of the run's curves that needs nothing but an image viewer."""

from __future__ import annotations

import json
import os
from typing import Any

import jax

TENSORBOARD_DIR = "tensorboard"
CURVES_FILE = "curves.png"
PROFILE_DIR = "profile"
# Steps before the trace starts: the first calls can include one-off work (transfers, warm-up).
PROFILE_AFTER = 2


class Scalars:
    """Writes every numeric field of a metrics record as a scalar at its `step`.

    On resume, purge_step = the restored step + 1 tells TensorBoard to drop the events the
    interrupted run wrote after that checkpoint. enabled=False: does nothing.
    """

    def __init__(self, workdir: str, *, enabled: bool, resume_step: int | None = None):
        self._writer = None
        if enabled:
            from tensorboardX import SummaryWriter

            purge = None if resume_step is None else resume_step + 1
            self._writer = SummaryWriter(os.path.join(workdir, TENSORBOARD_DIR),
                                         purge_step=purge)

    def write(self, record: dict[str, Any]) -> None:
        if self._writer is None:
            return
        for key, value in record.items():
            if key not in ("step", "epoch") and isinstance(value, (int, float)):
                self._writer.add_scalar(key, value, record["step"])

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


class ProfileWindow:
    """Traces `num_steps` steps with `jax.profiler` into workdir/profile (0: never).

    Call `before_step(step)` before running step `step` (1-based) and `close()` at the end.
    The trace opens in TensorBoard's profile plugin or Perfetto.
    """

    def __init__(self, workdir: str, num_steps: int, first_step: int):
        self.directory = os.path.join(workdir, PROFILE_DIR)
        self.start = first_step + PROFILE_AFTER
        self.stop = self.start + num_steps
        self.active = False
        self.enabled = num_steps > 0

    def before_step(self, step: int, state: Any) -> None:
        if not self.enabled:
            return
        if step == self.start and not self.active:
            jax.block_until_ready(state)
            jax.profiler.start_trace(self.directory)
            self.active = True
        elif step == self.stop and self.active:
            self.close(state)

    def close(self, state: Any = None) -> None:
        if self.active:
            jax.block_until_ready(state)
            jax.profiler.stop_trace()
            self.active = False


def write_curves(workdir: str) -> str:
    """Draws train loss and test accuracy against step from workdir/metrics.jsonl into
    workdir/curves.png, atomically (never seen half-written); returns its path. Raises
    WriteError when it cannot be written."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    from poolnets.training.artifacts import METRICS_FILE, write_atomic

    with open(os.path.join(workdir, METRICS_FILE)) as f:
        records = [json.loads(line) for line in f if line.strip()]
    fig, panels = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    for axes, key, style in zip(panels, ("train_loss", "test_accuracy"), ("-", "o-"),
                                strict=True):
        points = [(r["step"], r[key]) for r in records if key in r]
        if points:
            axes.plot(*zip(*points, strict=True), style, markersize=3)
        axes.set(xlabel="step", title=key.replace("_", " "))
        axes.grid(alpha=0.3)
    path = os.path.join(workdir, CURVES_FILE)
    try:
        write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=100))
    finally:
        plt.close(fig)
    return path
