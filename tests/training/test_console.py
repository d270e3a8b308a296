"""What `python train.py` says first: a line naming the run and what it is doing, printed
before the slow imports (the time it takes is measured by bench/loop_overhead.py
--first-line, not asserted here)."""

import subprocess
import sys

from conftest import ROOT


def _first_line(*args):
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        return proc.stdout.readline()
    finally:  # nothing after the first line is needed: the run is stopped there
        proc.kill()
        proc.communicate()


def test_the_first_line_names_the_run_and_says_it_is_importing_jax(tmp_path):
    workdir = tmp_path / "run"
    line = _first_line("--config", "configs/synthetic_resnet20.py", "--workdir", str(workdir))
    assert line == (f"train.py: resnet20 on synthetic (synthetic_resnet20), workdir {workdir}: "
                    "importing JAX\n")

