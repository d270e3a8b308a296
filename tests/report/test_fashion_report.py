"""The Fashion-MNIST report: its sweep config lists what the report promises, a sweep can
use the first N examples of its dataset, and the committed report/fashion_mnist/ re-renders
from its results.json exactly as committed (nothing is trained here)."""

import os
import shutil
import subprocess

import numpy as np
import pytest

from poolnets.data import Split
from poolnets.report.__main__ import main, parse_args
from poolnets.report.run import Context
from poolnets.report.sweep import variants
from poolnets.training.config import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join("poolnets", "report", "configs", "fashion_mnist.py")
POOLS = ("max", "avg", "lp", "strided_conv", "none", "blur", "stochastic", "gem", "soft",
         "median")


def test_fashion_sweep_lists_every_pool_with_both_heads_and_three_seeds():
    config, flags = parse_args(["--config", os.path.join(ROOT, CONFIG)])  # checked too
    assert config.dataset == "fashion_mnist" and config.seeds == (0, 1, 2)
    zoo = {(v["downsample"], v["head"]) for v in variants(config) if v["kind"] == "zoo"}
    assert zoo == {(p, h) for p in POOLS for h in ("flatten", "avg")}
    kinds = {v["kind"] for v in variants(config)}
    assert kinds == {"zoo", "stages", "augment", "texture"}  # every experiment of the report
    assert config.texture_dataset == "textures"  # the texture half stays the digits report's


def test_a_sweep_uses_the_first_examples_of_its_dataset_only():
    config, _ = parse_args(["--config.train_examples=3", "--config.test_examples=2"])
    ctx = Context(config)
    part = Split(np.arange(5 * 4).reshape(5, 2, 2, 1), np.arange(5))
    assert list(ctx._subset("digits", "train", part).labels) == [0, 1, 2]
    assert list(ctx._subset("digits", "test", part).labels) == [0, 1]
    assert ctx._subset("textures", "train", part) is part  # the texture set stays whole
    config.train_examples = 6
    with pytest.raises(ConfigError, match=r"config.train_examples=6 is more than the 5 "
                                          r"train examples of 'digits'; choices: 1..5"):
        Context(config)._subset("digits", "train", part)


def test_committed_fashion_report_re_renders_from_its_results(tmp_path, capsys):
    committed = subprocess.run(["git", "-C", ROOT, "ls-files", "report/fashion_mnist"],
                               capture_output=True, text=True, check=True).stdout.split()
    assert "report/fashion_mnist/results.json" in committed
    out = tmp_path / "fashion"
    out.mkdir()
    for path in committed:
        shutil.copy(os.path.join(ROOT, path), out)
    assert main(["--render-only", "--out", str(out)]) == 0
    capsys.readouterr()
    readme = (out / "README.md").read_text()
    assert readme == open(os.path.join(ROOT, "report", "fashion_mnist", "README.md")).read()
    assert "model `lenet5` on `fashion_mnist`" in readme
    assert "Data: every row except the texture rows trains on the first 4,000" in readme
    assert "| Max suits edges, average suits textures | test accuracy max vs avg on " \
           "Fashion-MNIST and on procedural textures |" in readme
    assert "not run (time budget): none" in readme
