"""What a run shows: the console (status lines, then a progress bar), TensorBoard event files
(via tensorboardX, no TensorFlow), and curves.png, a picture of the run's curves that needs
nothing but an image viewer. (The profiler trace is a hook: poolnets.training.hooks.)"""

from __future__ import annotations

import json
import os
from typing import Any

TENSORBOARD_DIR = "tensorboard"
CURVES_FILE = "curves.png"


class Console:
    """The run's console (enabled=False: silent, e.g. on processes other than 0).

    `say(line)` prints a status line on stdout at once (stderr is for errors and the bar);
    `start_progress(total, initial)` opens a progress bar (tqdm, on stderr) that
    `advance(steps, entry)` moves, showing the entry's train loss, accuracy and images/s;
    lines said while it is open are printed above it.
    """

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._bar: Any = None

    def say(self, line: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(line)
        else:
            print(line, flush=True)

    def start_progress(self, total: int, initial: int) -> None:
        if self.enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)

    def advance(self, steps: int, entry: dict[str, Any]) -> None:
        if self._bar is not None:
            # one redraw at most, by update() and only after tqdm's minimum interval
            self._bar.set_postfix(loss=f"{entry['train_loss']:.4f}",
                                  acc=f"{entry['train_accuracy']:.3f}",
                                  img_s=f"{entry['images_per_s']:.0f}", refresh=False)
            self._bar.update(steps)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


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
