"""What a run leaves in its workdir: metrics.jsonl, checkpoint/, summary.json.

summary.json is written last and atomically (temporary file + rename), so its presence means
the run completed. The checkpoint is written by orbax, which also writes into a temporary
directory and renames it on finalisation.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CHECKPOINT_DIR = "checkpoint"


def check_workdir_creatable(workdir: str) -> None:
    """Raises OSError if `workdir` can clearly not be created or written, without creating it.

    Walks up to the nearest existing path: it must be a directory we may write into.
    """
    path = os.path.abspath(workdir)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        raise NotADirectoryError(20, "Not a directory", path)
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(13, "Permission denied", path)


def check_workdir(workdir: str) -> str:
    """Creates `workdir` if needed and proves it writable; returns its absolute path.

    Removes a summary.json left by an earlier run there, so a crash of this run cannot leave
    an old summary looking like this run's. Raises OSError if the directory is unusable.
    """
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=workdir, prefix=".probe-"):
        pass
    stale = os.path.join(workdir, SUMMARY_FILE)
    if os.path.exists(stale):
        os.remove(stale)
    return workdir


def write_json_atomic(path: str, obj: Any) -> None:
    """Writes `obj` as JSON to `path` via a temporary file in the same directory + rename."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


class MetricsWriter:
    """Appends one JSON object per line to workdir/metrics.jsonl (truncated on open)."""

    def __init__(self, workdir: str):
        self._file = open(os.path.join(workdir, METRICS_FILE), "w")  # noqa: SIM115

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def save_checkpoint(workdir: str, state: Any) -> str:
    """Saves the TrainState pytree to workdir/checkpoint (replacing an older one)."""
    import orbax.checkpoint as ocp

    path = os.path.join(workdir, CHECKPOINT_DIR)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(path, state, force=True)
        checkpointer.wait_until_finished()
    return path


def restore_checkpoint(workdir: str, target: Any) -> Any:
    """Restores a TrainState saved by `save_checkpoint`; `target` gives structure and dtypes."""
    import orbax.checkpoint as ocp

    with ocp.StandardCheckpointer() as checkpointer:
        return checkpointer.restore(os.path.join(workdir, CHECKPOINT_DIR), target)
