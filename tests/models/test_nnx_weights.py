"""torchvision checkpoints -> the NNX zoo (`load_torchvision`) and its Linen form
(`load_torchvision_linen` + `create_linen`), with the layout the models hand
`poolnets.weights`. Fixtures and synthetic weights as in test_torchvision_weights.py;
here the logits must match torchvision's to 1e-5 of their largest magnitude."""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest
from flax import nnx
from test_torchvision_weights import ALL, FIXTURES, fixture, fixture_weights, relative_error

from poolnets.models import nnx as zoo
from poolnets.weights import torchvision as tv

RTOL = 1e-5
OTHERS = [pytest.mark.slow, pytest.mark.skipif(
    not ALL, reason="seconds each; POOLNETS_TORCHVISION_ALL=1 runs every architecture")]


# The deeper ResNets repeat resnet18's and resnet50's blocks; their abstract builds cost
# seconds, so they join the opt-in run.
LAYOUTS_IN_SUITE = ("resnet18", "resnet50", *tv.VGGS)


@pytest.mark.parametrize("name", [
    n if n in LAYOUTS_IN_SUITE else pytest.param(n, marks=OTHERS) for n in tv.SUPPORTED])
def test_nnx_layout_is_torchvisions_state_dict(name):
    """Key for key and shape for shape, derived from the abstract NNX model."""
    want = {k: tuple(s) for k, s in json.loads(str(fixture(name)["keys"]))}
    got = tv.expected_shapes(name, layout_for=lambda c: zoo.torchvision_layout(name, c))
    assert got == want


def _checkpoint(name, tmp_path):
    from safetensors.numpy import save_file

    weights, x, fx = fixture_weights(name)
    path = tmp_path / f"{name}.safetensors"
    save_file(weights, str(path))
    return path, x, fx["logits"]


@pytest.fixture
def no_linen_zoo(monkeypatch):
    """The NNX path never asks the 0.1 Linen zoo for a layout."""
    def refuse(*args):
        raise AssertionError(f"the Linen zoo's layout was used: {args}")
    monkeypatch.setattr(tv, "layout", refuse)


def test_resnet18_logits_equal_torchvision_through_nnx_and_the_linen_bridge(
        tmp_path, no_linen_zoo):
    path, x, want = _checkpoint("resnet18", tmp_path)
    model = zoo.load_torchvision("resnet18", path)
    assert model.num_classes == want.shape[1]
    variables = zoo.load_torchvision_linen("resnet18", path)
    module = zoo.create_linen("resnet18", num_classes=want.shape[1])
    graphdef, state = nnx.split(model)
    ours, linen = jax.jit(lambda s, v, x: (nnx.merge(graphdef, s)(x), module.apply(v, x)))(
        state, variables, x)
    for label, logits in (("NNX", ours), ("Linen bridge", linen)):
        err = relative_error(logits, want)
        print(f"resnet18 ({label}): max |poolnets - torchvision| / max |torchvision| = {err:.2e}")
        assert err <= RTOL, label


@pytest.mark.parametrize("name", [n for n in tv.SUPPORTED if n != "resnet18"])
@pytest.mark.slow
@pytest.mark.skipif(not ALL, reason="seconds each; POOLNETS_TORCHVISION_ALL=1 runs them")
def test_nnx_logits_equal_torchvision(name, tmp_path, no_linen_zoo):
    path, x, want = _checkpoint(name, tmp_path)
    model = zoo.load_torchvision(name, path)
    graphdef, state = nnx.split(model)
    logits = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, x)
    err = relative_error(logits, want)
    print(f"{name} (NNX): max |poolnets - torchvision| / max |torchvision| = {err:.2e}")
    assert err <= RTOL


def test_wrong_file_is_refused_naming_the_key(tmp_path):
    from safetensors.numpy import save_file

    save_file({"fc.weight": np.zeros((3, 4), np.float32)}, str(tmp_path / "bad.safetensors"))
    refused = r"resnet18: wrong shapes.*'fc\.weight: file \(3, 4\), expected \(3, 512\)'"
    with pytest.raises(ValueError, match=refused + ".*missing keys"):
        zoo.load_torchvision("resnet18", tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match="no torchvision checkpoint mapping"):
        zoo.load_torchvision("lenet5", os.path.join(FIXTURES, "torchvision_tiny.pth"))
