"""What a run leaves in its workdir: config.json, metrics.jsonl, checkpoints/<step>/,
tensorboard/, summary.json.

summary.json is written last and atomically (temporary file + rename), so its presence means
the run completed. Checkpoints are written by orbax, which writes into a temporary directory
and renames it on finalisation.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Any

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CHECKPOINT_DIR = "checkpoints"
CONFIG_FILE = "config.json"


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
    with contextlib.suppress(FileNotFoundError):  # other hosts of this run may race us
        os.remove(os.path.join(workdir, SUMMARY_FILE))
    return workdir


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except ValueError:  # a line cut short by a kill
        return 1 << 62


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
    """Appends one JSON object per line to workdir/metrics.jsonl.

    resume_step None: a fresh file. Otherwise the records of steps <= resume_step are kept
    and later ones (written after that checkpoint by the interrupted run) are dropped.
    """

    def __init__(self, workdir: str, resume_step: int | None = None):
        path = os.path.join(workdir, METRICS_FILE)
        kept = []
        if resume_step is not None and os.path.exists(path):
            with open(path) as f:
                kept = [line for line in f if line.strip() and _step_of(line) <= resume_step]
        self._file = open(path, "w")  # noqa: SIM115
        self._file.writelines(kept)
        self._file.flush()

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class CheckpointError(RuntimeError):
    """A checkpoint in the workdir that cannot be resumed from (corrupt or from another run)."""


# Fields that may change between a run and its resumption without changing its results.
RESUMABLE_CHANGES = ("data_dir", "log_every", "tensorboard", "profile_steps", "prefetch",
                     "distributed", "keep_checkpoints")


def _config_differences(saved: dict, now: dict) -> list[str]:
    keys = (set(saved) | set(now)) - set(RESUMABLE_CHANGES)
    return sorted(k for k in keys if saved.get(k) != now.get(k))


class Checkpoints:
    """Step-numbered orbax checkpoints in workdir/checkpoints, the newest `keep` kept.

    Each save is written to a temporary directory and renamed when complete (orbax), so a
    process killed mid-save leaves the previous checkpoints intact and resumable. The run's
    config is kept beside them in workdir/config.json, to refuse resuming another run.
    """

    def __init__(self, workdir: str, keep: int):
        self.directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)
        self.config_path = os.path.join(os.path.abspath(workdir), CONFIG_FILE)
        self.keep = keep
        self._manager = None

    def _open(self, writing: bool) -> Any:
        import orbax.checkpoint as ocp

        options = ocp.CheckpointManagerOptions(
            max_to_keep=self.keep, create=writing, enable_async_checkpointing=False,
            cleanup_tmp_directories=writing, save_root_metadata=writing,
        )
        return ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, None if there is none (reads only).

        Complete checkpoints are orbax's step directories named by the bare step number;
        one still being written (or cut off by a kill) carries a temporary suffix.
        """
        if not os.path.isdir(self.directory):
            return None
        steps = [int(name) for name in os.listdir(self.directory) if name.isdigit()]
        return max(steps, default=None)

    def restore_latest(self, target: Any, config: dict) -> tuple[Any, int | None]:
        """(state, step) from the newest checkpoint, or (target, None) when there is none.

        Raises CheckpointError, touching nothing, when the checkpoint does not load into
        `target` (corrupt files, another model or optimizer) or `config` differs from the
        saved config in a field that changes results.
        """
        import orbax.checkpoint as ocp

        step = self.latest_step()
        if step is None:
            return target, None
        where = os.path.join(self.directory, str(step))
        hint = "it was left untouched; resume with the same config or use a fresh --workdir"
        try:
            with open(self.config_path) as f:
                saved = json.load(f)
        except (OSError, ValueError) as e:
            raise CheckpointError(f"checkpoint {where} has no readable {CONFIG_FILE} beside it "
                                  f"({e}); {hint}") from None
        changed = _config_differences(saved, json.loads(json.dumps(config)))
        if changed:
            raise CheckpointError(f"checkpoint {where} was written with a different config "
                                  f"(fields {', '.join(changed)}); {hint}")
        manager = self._open(writing=False)
        try:
            restored = manager.restore(step, args=ocp.args.StandardRestore(target))
        except Exception as e:  # noqa: BLE001 -- any failure to load is reported the same way
            message = " ".join(str(e).split())[:300]
            raise CheckpointError(f"checkpoint {where} cannot be restored "
                                  f"({type(e).__name__}: {message}); {hint}") from None
        finally:
            manager.close()
        return restored, step

    def write_config(self, config: dict) -> None:
        """Records the run's config (once, at the start of a fresh run)."""
        write_json_atomic(self.config_path, config)

    def save(self, step: int, state: Any) -> None:
        """Saves `state` (a pytree of jax Arrays, replicated) as checkpoint `step`."""
        import orbax.checkpoint as ocp

        if self._manager is None:
            self._manager = self._open(writing=True)
        if step in self._manager.all_steps():
            return
        self._manager.save(step, args=ocp.args.StandardSave(state))
        self._manager.wait_until_finished()

    def close(self) -> None:
        if self._manager is not None:
            self._manager.close()
