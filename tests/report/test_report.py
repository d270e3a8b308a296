"""`python -m poolnets.report`: argument errors, the verdict rule, and one tiny end-to-end
sweep (two variants, one seed, a few steps) that writes the README, results and figures."""

import json
import os
import re

import pytest

from poolnets.report.__main__ import main
from poolnets.report.config import default_config, resolve_downsamples
from poolnets.report.results import compare


def test_bad_arguments_exit_2(capsys, tmp_path):
    assert main(["--set", "nonsense=1", "--out", str(tmp_path)]) == 2
    assert "unknown field 'nonsense'" in capsys.readouterr().err
    assert main(["--set", "downsamples=(\"maxx\",)", "--out", str(tmp_path)]) == 2
    assert "maxx" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "missing.py")]) == 2
    assert not os.path.exists(tmp_path / "README.md")


def test_default_sweep_covers_every_downsample():
    from poolnets.nn import downsample_names

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
            "--set", f"data_dir={tmp_path / 'data'!s}",
            "--set", "downsamples=('max', 'none')", "--set", "heads=flatten",
            "--set", "seeds=(0,)", "--set", "num_steps=4", "--set", "stages=()",
            "--set", "shifts=(0, 4)", "--set", "consistency_draws=1",
            "--set", "gaussian_sigmas=(0.0, 0.3)", "--set", "salt_pepper=(0.0, 0.1)",
            "--set", "rotations=(0.0, 20.0)", "--set", "scalings=(0.8, 1.0)",
            "--set", "erf_images=4", "--set", "gradcam_images=2",
            "--set", "augment_downsamples=('max',)", "--set", "augment_shifts=(3,)",
            "--set", "texture_downsamples=('max', 'avg')", "--set", "workers=2"]
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
