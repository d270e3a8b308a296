"""`python -m poolnets.report --config`: the shipped ResNet-20 / CIFAR-10 config runs end to
end (tiny: two variants, one seed, two steps) on `tfds.testing.mock_data` CIFAR-10."""

import json
import os

import pytest

from poolnets.report.__main__ import main

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "poolnets", "report", "configs",
                      "resnet20_cifar10.py")


@pytest.mark.slow
def test_resnet20_cifar10_config_end_to_end(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    out = tmp_path / "report"
    args = ["--config", CONFIG, "--out", str(out), "--no-progress",
            f"--config.data_dir={tmp_path / 'data'!s}",
            "--config.downsamples=max", "--config.seeds=0",
            "--config.num_steps=2", "--config.batch_size=8", "--config.workers=1",
            "--config.seed_parallel=loop", "--config.augment_shifts=()",
            "--config.texture_dataset=", "--config.shifts=(0, 4)",
            "--config.consistency_draws=1", "--config.gaussian_sigmas=(0.0, 0.3)",
            "--config.salt_pepper=(0.0, 0.1)", "--config.rotations=(0.0, 20.0)",
            "--config.scalings=1.0", "--config.erf_images=2", "--config.gradcam_images=2",
            "--config.chunk=16"]
    with tfds.testing.mock_data(num_examples=16):
        assert main(args) == 0
    results = json.load(open(out / "results.json"))
    assert results["meta"]["config"]["model"] == "resnet20"
    assert results["meta"]["config"]["dataset"] == "cifar10"
    assert results["meta"]["skipped"] == []
    rows = results["results"]
    assert [r["name"] for r in rows] == ["max/avg"]  # one variant: the file, end to end
    for r in rows:
        assert r["dataset"] == "cifar10" and r["steps"] == 2
        assert r["params"] == 269_722  # ResNet-20 as in tests/models (0.27M); pools add none
        assert 0 <= r["test_accuracy"]["mean"] <= 1 and len(r["test_accuracy"]["runs"]) == 1
        assert r["erf_area90"] > 0 and "analytic_rf" not in r  # no LeNet window chain
    readme = open(out / "README.md").read()
    assert "`resnet20` on `cifar10`" in readme and "\n| max/avg" in readme
    assert "not run (time budget): none" in readme
    assert {"shift_accuracy.png", "gradcam.png"} <= set(os.listdir(out))
