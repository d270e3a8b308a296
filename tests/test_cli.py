"""`python train.py ...` as a user runs it: bad input exits 2 with one line; a tiny run works."""

import ast
import json
import os
import pathlib
import subprocess
import sys

import pytest
from ml_collections import ConfigDict

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A prepared digits data dir (shared by the xdist workers), so no preparation chatter."""
    from poolnets.data import digits

    path = str(tmp_path_factory.getbasetemp().parent / "digits_data")
    digits.prepare(path)
    return path


def run_train(*args, env_extra=None, timeout=240):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env,
    )


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("train.py: error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_the_configs_and_where_each_field_is_documented(flag):
    from poolnets.training.defaults import base_config, field_docs

    result = run_train(flag, "--workdir", "/nonexistent/never")
    assert result.returncode == 0 and not result.stderr, result.stderr
    text = " ".join(result.stdout.split())  # the help wraps long lines
    for path in sorted((ROOT / "configs").glob("*.py")):
        first = ast.get_docstring(ast.parse(path.read_text())).split("\n\n")[0]
        assert f"{path.name} {' '.join(first.split())}" in text, path.name
    assert "documented in poolnets/training/defaults.py" in text
    docs = field_docs()
    for field, default in _leaves(base_config()):
        assert f"{field}={default!r} {' '.join(docs[field].split())}" in text, field


def _leaves(config, prefix=""):
    for key, value in config.items():
        if isinstance(value, ConfigDict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield prefix + key, value


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--config", "configs/nope.py"], ["'configs/nope.py'", "choices:", "configs/default.py"]),
        (["--config=configs/nope.py"], ["'configs/nope.py'", "configs/default.py"]),
        (["--config.nope=1"], ["'nope'", "choices:", "batch_size", "model"]),
        (["--config.augment.nope=1"],
         ["'augment.nope'", "choices: augment.enabled, augment.flip, augment.max_shift"]),
        (["--config.batch_size=abc"], ["--config.batch_size=abc"]),
        (["--nope=1"], ["nope"]),
        (["positional"], ["'positional'"]),
    ],
)
def test_bad_flags_exit_2_before_importing_jax(tmp_path, args, fragments):
    workdir = tmp_path / "run"
    result = run_train(*args, "--workdir", str(workdir))
    assert_one_line_error(result, *fragments)
    assert not workdir.exists()


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--config.model.name=lenet9"], ["model.name='lenet9'", "choices:", "lenet5"]),
        (["--config.dataset=svhn"], ["'svhn'", "choices: cifar10, cifar100, digits"]),
        (["--config.model.downsample=maxx"], ["model.downsample='maxx'", "choices:", "max"]),
        (["--config.optimizer=lamb"], ["'lamb'", "choices: sgd, adamw"]),
        (["--config.learning_rate=-1"], ["learning_rate=-1", "a finite number > 0"]),
        (["--config.learning_rate=nan"], ["learning_rate=nan", "a finite number > 0"]),
        (["--config.batch_size=30"], ["batch_size=30", "4 devices", "multiple of 4"]),
        (["--config.model.downsample_blocks=True"],
         ["downsample_blocks=True does not apply to 'lenet5'", "choices:", "resnet18"]),
    ],
)
def test_bad_config_values_exit_2(tmp_path, data_dir, args, fragments):
    workdir = tmp_path / "run"
    result = run_train(
        *args, f"--config.data_dir={data_dir}", "--workdir", str(workdir),
        env_extra={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"},
    )
    assert_one_line_error(result, *fragments)
    assert not workdir.exists()


def test_unprepared_dataset_says_how_to_prepare_it(tmp_path):
    empty = tmp_path / "tfds"
    result = run_train("--config.dataset=mnist", f"--config.data_dir={empty}",
                       "--workdir", str(tmp_path / "run"))
    assert_one_line_error(result, "'mnist' is not prepared in", str(empty),
                          f"tfds build mnist --data_dir={empty} --file_format=array_record")
    assert not (tmp_path / "run").exists()


def test_unwritable_workdir_exit_2(tmp_path, data_dir):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = run_train(f"--config.data_dir={data_dir}", "--workdir", str(blocker / "run"))
    assert_one_line_error(result, f"'{blocker / 'run'}'", "not writable")


def test_tiny_lenet5_run_through_the_cli(tmp_path, data_dir):
    workdir = tmp_path / "run"
    result = run_train(
        "--config", "configs/default.py", "--config.num_steps=6", "--config.log_every=3",
        "--config.model.width=0.5", f"--config.data_dir={data_dir}", "--workdir", str(workdir),
    )
    assert result.returncode == 0, result.stderr
    assert "test_accuracy" in result.stdout
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["model"] == "lenet5" and summary["steps"] == 6
    # LeNet-5 (modern) on 32x32x1, 10 classes, at half width (61,706 at full width): C1
    # 5*5*1*3+3, C3 5*5*3*8+8, C5 (5*5*8)*60+60, F6 60*42+42, output 42*10+10
    assert summary["params"] == 78 + 608 + 12_060 + 2_562 + 430
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [3, 6, 6]  # two train logs, one eval
    # the console counts epochs as metrics.jsonl does: epochs completed, 6 steps of 22
    assert records[-1]["epoch"] == 0.273
    assert "epoch 0.273  step 6  test_loss" in result.stdout, result.stdout
    assert (workdir / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(os.listdir(workdir / "checkpoints")) == ["6"]


def test_divergence_exits_1_naming_the_step(tmp_path, data_dir):
    workdir = tmp_path / "run"
    result = run_train("--config.num_steps=8", "--config.learning_rate=1e30",
                       "--config.warmup_epochs=0", "--config.checkpoint_every_steps=1",
                       f"--config.data_dir={data_dir}", "--workdir", str(workdir))
    assert result.returncode == 1, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("train.py: error: loss or gradients became NaN/Inf at step "), line
    bad_step = int(line.split("at step ")[1].split()[0])
    kept = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert kept and kept[-1] == bad_step - 1  # the last good state, nothing after it
    assert not (workdir / "summary.json").exists()


# train.py with orbax's metadata writes failing as on a full disk
FULL_DISK = """
import errno, runpy, sys
from orbax.checkpoint._src.path import async_path

async def full(path, text):
    raise OSError(errno.ENOSPC, "No space left on device", str(path))

async_path.write_text = full
sys.argv = sys.argv[1:]  # train.py and its arguments
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_full_disk_at_checkpoint_is_one_line_exit_1(tmp_path, data_dir):
    workdir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(ROOT / "train.py"), "--config.num_steps=3",
         "--config.log_every=3", f"--config.data_dir={data_dir}", "--workdir", str(workdir)],
        cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert result.returncode == 1, result.stderr
    # the progress bar shares stderr; besides it, only the error line
    lines = [line for line in result.stderr.splitlines() if "step/s" not in line
             and "it/s" not in line and line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"train.py: error: cannot write checkpoint {workdir}/checkpoints/3 "
                               "(OSError: [Errno 28] No space left on device: "), lines[0]
    assert "Traceback" not in result.stderr and "Event loop" not in result.stderr
    assert not (workdir / "checkpoints" / "3").exists()
    assert not (workdir / "summary.json").exists()


@pytest.mark.slow
def test_default_config_reaches_the_issue_floor(tmp_path, data_dir):
    """The default run (LeNet-5 on digits) must reach >= 98.5% test accuracy."""
    workdir = tmp_path / "default"
    result = run_train(f"--config.data_dir={data_dir}", "--workdir", str(workdir), timeout=600)
    assert result.returncode == 0, result.stderr
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["test_accuracy"] >= 0.985, summary
    assert summary["steps"] == 30 * (1442 // 64)
