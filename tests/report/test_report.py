"""`python -m poolnets.report`: argument errors, the verdict rule, and one tiny end-to-end
sweep (two variants, one seed, a few steps) that writes the README, results and figures."""

import json
import os
import re

import pytest

from poolnets.report.__main__ import main, parse_args
from poolnets.report.config import (
    SWEEP_NUMBERS,
    check_sweep,
    default_config,
    resolve_downsamples,
)
from poolnets.report.results import compare


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config.nonsense=1"], "unknown config field 'nonsense' in "),
        (["--config.downsamples=maxx"],
         "config.downsamples=('maxx',): 'maxx' is not valid; choices: avg, blur, "),
        (["--config.seeds=-1"], "config.seeds=(-1,) must be a tuple of integers in [0, 2**63)"),
        (["--config.learning_rate=nan"], "config.learning_rate=nan must be a finite number > 0"),
        (["--config.seed_parallel=pmap"], "config.seed_parallel='pmap' is not valid; "
                                          "choices: loop, vmap"),
        (["--config.num_steps=x"], "flag --config.num_steps=x: "),
        (["--config.stages=0,5"], "config.stages=(0, 5) pools more stages than the 4 of "
                                  "config.stage_channels; choices: 0..4 each"),
        (["--config", "missing.py"], "config file 'missing.py' not found; choices: "
                                     "poolnets/report/configs/default.py, "),
        (["--set", "seeds=0"], "Unknown command line flag 'set'"),
        (["positional"], "unexpected arguments ['positional']"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(capsys, tmp_path, args, message):
    assert main([*args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"poolnets.report: error: {message}") and err.count("\n") == 1, err
    assert os.listdir(tmp_path) == []


def test_sweep_file_and_overrides_as_train_py(tmp_path):
    """A sweep file returns only the fields it changes; --config.<field> overrides either."""
    sweep = tmp_path / "sweep.py"
    sweep.write_text("import ml_collections\n\ndef get_config():\n"
                     "    return ml_collections.ConfigDict({'num_epochs': 2, 'heads': ('avg',)})\n")
    config, flags = parse_args(["--config", str(sweep), "--config.seeds=0,1",
                                "--config.downsamples=('max', 'avg')", "--out", "x"])
    assert (config.num_epochs, config.heads, config.seeds) == (2, ("avg",), (0, 1))
    assert config.downsamples == ("max", "avg") and flags.out == "x"
    assert config.batch_size == default_config().batch_size  # not in the file: the default
    config, _ = parse_args(["--config.heads=flatten", "--config.max_minutes=40"])
    assert config.heads == ("flatten",) and config.max_minutes == 40.0


def test_every_numeric_sweep_field_has_a_range():
    config = default_config()
    numeric = {k for k, v in config.items() if not isinstance(v, str) and (
        isinstance(v, int | float) and not isinstance(v, bool)
        or isinstance(v, tuple) and v and all(isinstance(x, int | float) for x in v))}
    assert numeric - {"head_epochs"} <= set(SWEEP_NUMBERS), numeric - set(SWEEP_NUMBERS)
    check_sweep(config)


def test_default_sweep_covers_every_downsample():
    from poolnets.models import downsample_names

    names = resolve_downsamples(default_config())
    assert names[:7] == ["max", "avg", "lp", "strided_conv", "none", "blur", "stochastic"]
    assert sorted(names) == downsample_names()


def _stat(runs):
    import numpy as np

    return {"mean": float(np.mean(runs)), "std": float(np.std(runs)), "runs": runs}


def test_compare_needs_two_standard_errors():
    a, b = {"x": _stat([0.90, 0.91, 0.92])}, {"x": _stat([0.80, 0.81, 0.82])}
    assert compare(a, b, "x") == "higher" and compare(b, a, "x") == "lower"
    c = {"x": _stat([0.70, 0.91, 1.0])}
    assert compare(c, a, "x") == "indistinguishable"
    assert compare({"x": _stat([0.5, 0.5])}, {"x": _stat([0.503, 0.503])}, "x") == (
        "indistinguishable")  # below the 0.005 floor


@pytest.mark.slow
def test_tiny_sweep_end_to_end(tmp_path):
    out = tmp_path / "report"
    args = ["--out", str(out), "--no-progress",
            f"--config.data_dir={tmp_path / 'data'!s}",
            "--config.downsamples=('max', 'none')", "--config.heads=flatten",
            "--config.seeds=0", "--config.num_steps=4", "--config.stages=()",
            "--config.shifts=(0, 4)", "--config.consistency_draws=1",
            "--config.gaussian_sigmas=(0.0, 0.3)", "--config.salt_pepper=(0.0, 0.1)",
            "--config.rotations=(0.0, 20.0)", "--config.scalings=(0.8, 1.0)",
            "--config.erf_images=4", "--config.gradcam_images=2",
            "--config.augment_downsamples=max", "--config.augment_shifts=3",
            "--config.texture_downsamples=('max', 'avg')", "--config.workers=2"]
    assert main(args) == 0
    results = json.load(open(out / "results.json"))
    names = [r["name"] for r in results["results"]]
    assert names == ["max/flatten", "none/flatten", "max/flatten+shift3",
                     "textures:max/flatten", "textures:avg/flatten"]
    assert results["meta"]["skipped"] == []
    mx, none, shifted, tex_max, _ = results["results"]
    assert shifted["max_shift_train"] == 3 and mx["max_shift_train"] == 0
    assert shifted["params"] == mx["params"] and shifted["kind"] == "augment"
    assert tex_max["dataset"] == "textures" and tex_max["params"] == 61706 - 84 * 2 - 2
    assert mx["params"] == 61706 and none["params"] > mx["params"]
    assert none["flops"] > mx["flops"] > 0
    assert mx["analytic_rf"][-1]["size"] == 16 and none["analytic_rf"][-1]["size"] == 9
    for r in (mx, none):
        assert 0 <= r["shift_consistency"]["mean"] <= 1 and len(r["shift_accuracy"]["mean"]) == 2
        # severity 0 and shift 0 reuse the clean images: the same accuracy exactly
        assert r["gaussian_noise"]["mean"][0] == r["test_accuracy"]["mean"]
        assert r["shift_accuracy"]["mean"][0] == r["test_accuracy"]["mean"]
    readme = open(out / "README.md").read()
    assert "| Pooling cuts computation and parameters |" in readme
    assert "\n| max/flatten" in readme and results["meta"]["machine"] in readme
    assert "not measured in this run" in readme  # no stages, no avg, no blur variants
    assert "not run (time budget): none" in readme
    assert "| Shift invariance comes from pooling, not from data augmentation |" in readme
    assert "\n| textures:avg/flatten" in readme and "\n| max/flatten+shift3" in readme
    pngs = [f for f in os.listdir(out) if f.endswith(".png")]
    assert {"shift_accuracy.png", "robustness.png", "erf.png", "gradcam.png",
            "cost.png", "augmentation.png", "textures.png"} <= set(pngs)
    assert sum(os.path.getsize(out / f) for f in pngs) < 1_000_000


def test_committed_report_re_renders_from_what_is_committed(tmp_path, capsys):
    """A fresh clone has report/results.json and the PNGs but not arrays.npz (a run that
    predates committing it): --render-only redraws everything results.json determines and
    keeps the ERF and Grad-CAM figures, reproducing the committed README exactly."""
    import shutil
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    committed = subprocess.run(["git", "-C", root, "ls-files", "report"], capture_output=True,
                               text=True, check=True).stdout.split()
    out = tmp_path / "report"
    out.mkdir()
    for path in committed:
        shutil.copy(os.path.join(root, path), out)
    assert main(["--render-only", "--out", str(out)]) == 0
    assert "erf.png and gradcam.png are kept" in capsys.readouterr().err
    readme = open(out / "README.md").read()
    assert readme == open(os.path.join(root, "report", "README.md")).read()
    linked = set(re.findall(r"\]\(([\w.]+\.png)\)", readme))
    assert linked == {os.path.basename(p) for p in committed if p.endswith(".png")}
    assert main(["--render-only", "--out", str(tmp_path / "empty")]) == 2
    assert "needs an earlier run" in capsys.readouterr().err
