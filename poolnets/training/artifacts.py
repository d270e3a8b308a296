"""What a run leaves in its workdir: config.json, metrics.jsonl, checkpoints/<step>/,
tensorboard/, summary.json.

summary.json is written last and atomically (temporary file + rename), so its presence means
the run completed. Checkpoints are written by orbax, which writes into a temporary directory
and renames it on finalisation. A write that fails (a full disk) raises WriteError naming the
file and the OS error; what it had begun keeps a temporary name. Checkpoints newer than the
newest one that restores are moved to unrestorable-checkpoints/ before the run saves again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Any

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CHECKPOINT_DIR = "checkpoints"
CONFIG_FILE = "config.json"
UNRESTORABLE_DIR = "unrestorable-checkpoints"
STATE_ITEM, DATA_ITEM = "default", "data"  # orbax items of a checkpoint step


class WriteError(RuntimeError):
    """A workdir file that could not be written (disk full, permissions); one-line message."""


def _os_error(error: BaseException) -> OSError | None:
    """The OSError that `error` is or was raised from (orbax wraps them), if any."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _reason(error: BaseException) -> str:
    """One line: the underlying OSError if there is one, else the exception's type and text."""
    cause = _os_error(error) or error
    text = " ".join(str(cause).split())
    return f"{type(cause).__name__}: {text if len(text) <= 300 else text[:297] + '...'}"


@contextlib.contextmanager
def _writing(what: str) -> Iterator[None]:
    """Turns an OSError raised while writing `what` into a one-line WriteError."""
    try:
        yield
    except OSError as e:
        raise WriteError(f"cannot write {what} ({_reason(e)})") from None


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


def write_atomic(path: str, write: Callable[[IO[bytes]], None]) -> None:
    """Calls `write(f)` on a temporary file beside `path`, syncs it, renames it to `path`.

    Raises WriteError (the temporary file removed, `path` as it was) when that fails, so
    `path` is either the old file or the whole new one.
    """
    directory = os.path.dirname(os.path.abspath(path))
    with _writing(path):
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise


def write_json_atomic(path: str, obj: Any) -> None:
    """Writes `obj` as JSON to `path` with `write_atomic`."""
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    write_atomic(path, lambda f: f.write(text.encode()))


class MetricsWriter:
    """Appends one JSON object per line to workdir/metrics.jsonl.

    resume_step None: a fresh file. Otherwise the records of steps <= resume_step are kept
    and later ones (written after that checkpoint by the interrupted run) are dropped.
    """

    def __init__(self, workdir: str, resume_step: int | None = None):
        self.path = os.path.join(workdir, METRICS_FILE)
        kept = []
        if resume_step is not None and os.path.exists(self.path):
            with open(self.path) as f:
                kept = [line for line in f if line.strip() and _step_of(line) <= resume_step]
        with _writing(self.path):
            self._file = open(self.path, "w")  # noqa: SIM115
            self._file.writelines(kept)
            self._file.flush()

    def write(self, record: dict[str, Any]) -> None:
        with _writing(self.path):
            self._file.write(json.dumps(record, sort_keys=True) + "\n")
            self._file.flush()

    def close(self) -> None:
        self._file.close()


class CheckpointError(RuntimeError):
    """A checkpoint in the workdir that cannot be resumed from (corrupt or from another run)."""


# Fields that may change between a run and its resumption without changing its results.
# config.data (workers) is checked against the checkpoint's input-pipeline state instead.
RESUMABLE_CHANGES = ("data_dir", "log_every", "tensorboard", "curves", "profile_steps",
                     "prefetch", "distributed", "keep_checkpoints", "data")


def _config_differences(saved: dict, now: dict) -> list[str]:
    keys = (set(saved) | set(now)) - set(RESUMABLE_CHANGES)
    return sorted(k for k in keys if saved.get(k) != now.get(k))


class _HeldOrbaxLogs(logging.Filter):
    """Holds back the log records orbax emits (from its worker threads too) while attached."""

    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if f"{os.sep}orbax{os.sep}" not in record.pathname:
            return True
        self.records.append(record)
        return False


def _is_closed_loop_echo(unraisable: Any) -> bool:
    if not (isinstance(unraisable.exc_value, RuntimeError)
            and str(unraisable.exc_value) == "Event loop is closed"):
        return False
    frame = unraisable.exc_traceback
    while frame is not None:
        if frame.tb_frame.f_code.co_name == "call_soon_threadsafe":
            return True
        frame = frame.tb_next
    return False


def _drop_closed_loop_echoes() -> None:
    """Installs (once) an unraisable-exception hook that drops one known echo of a failure.

    orbax runs a save or restore on a private asyncio loop and closes it when the operation
    fails, while tensorstore may still complete futures of that operation; their callbacks
    then find the loop closed, and Python prints `RuntimeError: Event loop is closed` with a
    traceback, at any later moment (often after train.py's one-line error). The failure is
    reported by the exception raised here; every other unraisable goes to the previous hook.
    """
    previous = sys.unraisablehook
    if getattr(previous, "drops_closed_loop_echoes", False):
        return

    def hook(unraisable: Any) -> None:
        if not _is_closed_loop_echo(unraisable):
            previous(unraisable)

    hook.drops_closed_loop_echoes = True
    sys.unraisablehook = hook


@contextlib.contextmanager
def _orbax_call() -> Iterator[None]:
    """Runs an orbax call whose failure becomes our one-line error: the tracebacks orbax
    logs for that failure (hundreds of lines) are dropped; after success its logs pass."""
    _drop_closed_loop_echoes()
    held = _HeldOrbaxLogs()
    logger = logging.getLogger("absl")  # orbax logs through absl.logging
    logger.addFilter(held)
    try:
        yield
    finally:
        logger.removeFilter(held)
    for record in held.records:
        logger.handle(record)


class Checkpoints:
    """Step-numbered orbax checkpoints in workdir/checkpoints, the newest `keep` kept.

    Each save is written to a temporary directory and renamed when complete (orbax), so a
    process killed mid-save leaves the previous checkpoints intact and resumable. The run's
    config is kept beside them in workdir/config.json, to refuse resuming another run.
    A checkpoint holds the train state (orbax item "default") and the input pipeline's
    iterator state (item "data", JSON: {"workers": ..., "iterator": Grain's state}).
    """

    def __init__(self, workdir: str, keep: int):
        self.workdir = os.path.abspath(workdir)
        self.directory = os.path.join(self.workdir, CHECKPOINT_DIR)
        self.config_path = os.path.join(self.workdir, CONFIG_FILE)
        self.keep = keep
        self.skipped: list[tuple[int, str]] = []  # (step, why) newer than the one restored
        self.restored_data: dict | None = None  # the "data" item of the restored checkpoint
        self._manager = None

    def _open(self, writing: bool) -> Any:
        import orbax.checkpoint as ocp

        options = ocp.CheckpointManagerOptions(
            max_to_keep=self.keep, create=writing, enable_async_checkpointing=False,
            cleanup_tmp_directories=writing, save_root_metadata=writing,
        )
        return ocp.CheckpointManager(self.directory, item_names=(STATE_ITEM, DATA_ITEM),
                                     options=options)

    def steps(self) -> list[int]:
        """Steps of the complete checkpoints, newest first (reads only).

        Complete checkpoints are orbax's step directories named by the bare step number;
        one still being written (or cut off by a kill or a full disk) carries a temporary
        suffix.
        """
        if not os.path.isdir(self.directory):
            return []
        return sorted((int(n) for n in os.listdir(self.directory) if n.isdigit()), reverse=True)

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, None if there is none (reads only)."""
        return next(iter(self.steps()), None)

    def last_good(self) -> str:
        """Where a restart of this run would begin, for messages."""
        step = self.latest_step()
        if step is None:
            return f"no checkpoint was written yet in {self.directory} (a restart begins at step 0)"
        return f"last good checkpoint: step {step} in {self.directory}"

    def restore_latest(self, target: Any, config: dict) -> tuple[Any, int | None]:
        """(state, step) from the newest checkpoint that restores, (target, None) if none exists.

        Newer checkpoints that do not load into `target` (corrupt files) are skipped, left
        untouched and listed in `self.skipped` with the reason. Raises CheckpointError,
        touching nothing, when `config` differs from the saved config in a field that changes
        results, or when no checkpoint loads (another model or optimizer, or all corrupt).
        """
        import orbax.checkpoint as ocp

        from poolnets.training.state import keys_as_data, keys_from_data

        steps = self.steps()
        if not steps:
            return target, None
        newest = os.path.join(self.directory, str(steps[0]))
        hint = "it was left untouched; resume with the same config or use a fresh --workdir"
        try:
            with open(self.config_path) as f:
                saved = json.load(f)
        except (OSError, ValueError) as e:
            raise CheckpointError(f"checkpoint {newest} has no readable {CONFIG_FILE} beside it "
                                  f"({e}); {hint}") from None
        changed = _config_differences(saved, json.loads(json.dumps(config)))
        if changed:
            raise CheckpointError(f"checkpoint {newest} was written with a different config "
                                  f"(fields {', '.join(changed)}); {hint}")
        manager = self._open(writing=False)
        failures = []
        try:
            for step in steps:
                items = {STATE_ITEM: ocp.args.StandardRestore(keys_as_data(target))}
                if os.path.isdir(os.path.join(self.directory, str(step), DATA_ITEM)):
                    items[DATA_ITEM] = ocp.args.JsonRestore()
                try:
                    with _orbax_call():
                        restored = manager.restore(step, args=ocp.args.Composite(**items))
                except Exception as e:  # noqa: BLE001 -- any failure to load: try the older one
                    failures.append((step, _reason(e)))
                    continue
                self.skipped = failures
                self.restored_data = restored.get(DATA_ITEM)
                return keys_from_data(restored[STATE_ITEM], target), step
        finally:
            with _orbax_call():
                manager.close()
        older = f", nor can the {len(steps) - 1} older ones" if len(steps) > 1 else ""
        raise CheckpointError(
            f"checkpoint {newest} cannot be restored ({failures[0][1]}){older}; they were left "
            "untouched; resume with the model and code that wrote them, or use a fresh --workdir")

    def set_aside_skipped(self) -> list[str]:
        """Moves the checkpoints that `restore_latest` skipped (their files unchanged) to
        workdir/unrestorable-checkpoints/<step>, so this run can save those steps again and a
        later restart does not meet them; returns one line per checkpoint saying so."""
        notes = []
        for step, why in self.skipped:
            source = os.path.join(self.directory, str(step))
            target = os.path.join(self.workdir, UNRESTORABLE_DIR, str(step))
            suffix = 0
            while os.path.exists(target):  # set aside before, by an earlier restart
                suffix += 1
                target = os.path.join(self.workdir, UNRESTORABLE_DIR, f"{step}.{suffix}")
            with _writing(target):
                os.makedirs(os.path.dirname(target), exist_ok=True)
                os.rename(source, target)
            notes.append(f"skipped checkpoint {source}: cannot be restored ({why}); moved to "
                         f"{target}")
        self.skipped = []
        return notes

    def write_config(self, config: dict) -> None:
        """Records the run's config (once, at the start of a fresh run)."""
        write_json_atomic(self.config_path, config)

    def data_state(self, step: int, workers: int) -> Any:
        """The input iterator's state restored with checkpoint `step`, for a pipeline with
        `workers` processes; CheckpointError (one line) when it cannot continue exactly."""
        where = os.path.join(self.directory, str(step))
        data = self.restored_data
        if data is None:
            raise CheckpointError(
                f"checkpoint {where} has no input-pipeline state (written before poolnets "
                "read data with Grain), so this run cannot continue from it exactly; use a "
                "fresh --workdir")
        if data["workers"] != workers:
            raise CheckpointError(
                f"checkpoint {where} was written with config.data.workers={data['workers']} "
                f"and Grain's iterator state depends on the worker count; resume with "
                f"config.data.workers={data['workers']} (now {workers})")
        return data["iterator"]

    def save(self, step: int, state: Any, data: dict | None = None) -> None:
        """Saves `state` (a pytree of jax Arrays, replicated) as checkpoint `step`, with the
        input pipeline's state `data` (JSON, the same on every process) when given.

        Raises WriteError naming the checkpoint and the cause when the save fails; what was
        written keeps orbax's temporary name, which restores ignore and the next save removes.
        """
        import orbax.checkpoint as ocp

        from poolnets.training.state import keys_as_data

        where = os.path.join(self.directory, str(step))
        try:
            with _orbax_call():
                if self._manager is None:
                    self._manager = self._open(writing=True)
                if step in self._manager.all_steps():
                    return
                items = {STATE_ITEM: ocp.args.StandardSave(keys_as_data(state))}
                if data is not None:
                    items[DATA_ITEM] = ocp.args.JsonSave(data)
                self._manager.save(step, args=ocp.args.Composite(**items))
                self._manager.wait_until_finished()
        except Exception as e:  # noqa: BLE001 -- orbax wraps OS errors in its own
            with contextlib.suppress(Exception):  # the save's error is the one to report
                self.close()
            raise WriteError(f"cannot write checkpoint {where} ({_reason(e)})") from None

    def close(self) -> None:
        """Closes the orbax manager (idempotent)."""
        manager, self._manager = self._manager, None
        if manager is not None:
            with _orbax_call():
                manager.close()
