"""torchvision checkpoints -> poolnets: exact logits and activations, both file formats,
refusal of bad files.

Fixtures come from tools/make_torchvision_fixtures_models.py (torch + torchvision): for each
architecture its state-dict keys/shapes, torchvision's logits (and for four architectures a
few activations) under weights that `poolnets.weights.synthetic` rebuilds here without torch.
Tolerance: |poolnets - torchvision| <= 1e-5 * max|torchvision| per compared array.
"""

from __future__ import annotations

import functools
import io
import json
import os
import pickle
import sys
import types
import zipfile

import jax
import numpy as np
import pytest
from flax import nnx

from poolnets import models
from poolnets.models.nnx.pretrained import torchvision_layout
from poolnets.weights import UnsafePickleError, read_state_dict
from poolnets.weights.checkpoint import restore_variables, save_variables
from poolnets.weights.synthetic import synthetic_input, synthetic_state_dict
from poolnets.weights.torchvision import SUPPORTED, convert_torchvision, expected_shapes

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
IN_SUITE = ("resnet18", "resnet50", "vgg11_bn")  # the other 10: POOLNETS_TORCHVISION_ALL=1
RTOL = 1e-5
ALL = os.environ.get("POOLNETS_TORCHVISION_ALL") == "1"
OTHERS = [pytest.mark.slow, pytest.mark.skipif(
    not ALL, reason="seconds each; POOLNETS_TORCHVISION_ALL=1 runs every architecture")]


def fixture(name: str) -> dict:
    with np.load(os.path.join(FIXTURES, f"torchvision_{name}.npz")) as f:
        return dict(f)


def fixture_weights(name: str) -> tuple[dict, np.ndarray, dict]:
    fx = fixture(name)
    shapes = {k: tuple(s) for k, s in json.loads(str(fx["keys"]))}
    weights = synthetic_state_dict(shapes, int(fx["seed"]))
    checksum = sum(float(np.sum(v, dtype=np.float64)) for v in weights.values())
    # If NumPy's generator stream ever changed, this says so instead of a logit mismatch.
    assert checksum == pytest.approx(float(fx["weights_checksum"]), rel=1e-12)
    x = synthetic_input(tuple(fx["input_shape"]), int(fx["seed"])).transpose(0, 2, 3, 1)
    return weights, x, fx


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(got) - want)) / np.max(np.abs(want)))


def layout_of(name: str):
    return functools.partial(torchvision_layout, name)


def checkpoint(name: str, tmp_path) -> tuple[str, np.ndarray, dict]:
    from safetensors.numpy import save_file

    weights, x, fx = fixture_weights(name)
    path = tmp_path / f"{name}.safetensors"
    save_file(weights, str(path))
    return path, x, fx


def probes(name: str, maps: list, feature_info: list) -> dict[str, np.ndarray]:
    """`forward_intermediates`' maps under the fixture's probe names: a ResNet's stages by
    name, VGG's i-th pool as its stage i+1 (the map after each downsampling point)."""
    if name.startswith("resnet"):
        return {f"act_{i['name']}": m for i, m in zip(feature_info, maps, strict=True)}
    return {f"act_pool{int(i['name'].removeprefix('stage')) - 1}": m
            for i, m in zip(feature_info, maps, strict=True)}


@pytest.mark.parametrize("name", [
    n if n in IN_SUITE else pytest.param(n, marks=OTHERS) for n in SUPPORTED])
def test_logits_and_activations_equal_torchvision(name, tmp_path):
    """`load_torchvision` from a safetensors file; logits and the fixture's activation
    probes (through `forward_intermediates`) against torchvision's."""
    path, x, fx = checkpoint(name, tmp_path)
    model = models.load_torchvision(name, path)
    assert model.num_classes == fx["logits"].shape[1]
    graphdef, state = nnx.split(model)
    logits, maps = jax.jit(lambda s, x: (nnx.merge(graphdef, s)(x),
                                         nnx.merge(graphdef, s).forward_intermediates(x)))(
        state, x)
    err = relative_error(logits, fx["logits"])
    print(f"{name}: max |poolnets - torchvision| / max |torchvision| = {err:.2e}")
    assert err <= RTOL, f"{name}: logits differ, max relative error {err:.3g}"
    got = probes(name, maps, model.feature_info)
    acts = [k for k in fx if k.startswith("act_") and k != "act_stem_pool"]
    assert set(acts) <= set(got), (acts, sorted(got))
    for label in acts:
        want = fx[label]
        assert relative_error(np.asarray(got[label])[0, ..., : want.shape[-1]], want) <= RTOL, (
            f"{name}: activation {label} differs")


def test_linen_variables_give_torchvisions_logits(tmp_path):
    path, x, fx = checkpoint("resnet18", tmp_path)
    variables = models.load_torchvision_linen("resnet18", path)
    module = models.create_linen("resnet18", num_classes=fx["logits"].shape[1])
    assert relative_error(jax.jit(module.apply)(variables, x), fx["logits"]) <= RTOL


# The deeper ResNets repeat resnet18's and resnet50's blocks; their abstract builds cost
# seconds, so they join the opt-in run.
LAYOUTS_IN_SUITE = ("resnet18", "resnet50", "vgg11", "vgg11_bn", "vgg16", "vgg19_bn")


@pytest.mark.parametrize("name", [
    n if n in LAYOUTS_IN_SUITE else pytest.param(n, marks=OTHERS) for n in SUPPORTED])
def test_expected_keys_are_torchvisions(name):
    """The layout derived from the abstract NNX model is torchvision's state dict, key for
    key and shape for shape."""
    want = {k: tuple(s) for k, s in json.loads(str(fixture(name)["keys"]))}
    assert expected_shapes(name, layout_of(name)) == want


def test_safetensors_and_orbax_round_trip(tmp_path):
    path, _, _ = checkpoint("resnet18", tmp_path)
    weights, _, _ = fixture_weights("resnet18")
    loaded = models.load_torchvision_linen("resnet18", path)
    direct = convert_torchvision("resnet18", weights, layout_of("resnet18"))
    assert jax.tree.all(jax.tree.map(np.array_equal, loaded, direct))
    saved = save_variables(tmp_path / "ckpt", loaded)
    restored = restore_variables(saved, target=loaded)
    assert jax.tree.structure(restored) == jax.tree.structure(loaded)
    assert jax.tree.all(jax.tree.map(np.array_equal, restored, loaded))
    with pytest.raises(ValueError, match="already exists"):
        save_variables(saved, loaded)


def test_wrong_file_is_refused_naming_the_key(tmp_path):
    from safetensors.numpy import save_file

    save_file({"fc.weight": np.zeros((3, 4), np.float32)}, str(tmp_path / "bad.safetensors"))
    refused = r"resnet18: wrong shapes.*'fc\.weight: file \(3, 4\), expected \(3, 512\)'"
    with pytest.raises(ValueError, match=refused + ".*missing keys"):
        models.load_torchvision("resnet18", tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match="no torchvision checkpoint mapping"):
        models.load_torchvision("lenet5", os.path.join(FIXTURES, "torchvision_tiny.pth"))


@pytest.mark.parametrize("file", ["torchvision_tiny.pth", "torchvision_tiny_legacy.pth"])
def test_torch_save_files_read_exactly(file):
    """Zip and legacy torch.save files: strided and offset views, several dtypes."""
    got = read_state_dict(os.path.join(FIXTURES, file))
    with np.load(os.path.join(FIXTURES, "torchvision_tiny_expected.npz")) as want:
        assert sorted(got) == sorted(want.files)
        for key in want.files:
            value = got[key].astype(np.float32) if key == "bf16" else got[key]  # stored as f32
            assert value.dtype == want[key].dtype and value.shape == want[key].shape
            np.testing.assert_array_equal(value, want[key])
        assert got["bf16"].dtype.name == "bfloat16"


@pytest.fixture
def no_code_runs(tmp_path, monkeypatch):
    """Records os.system / eval calls and works in an empty directory."""
    calls = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a))
    monkeypatch.setattr("builtins.eval", lambda *a: calls.append(a))
    monkeypatch.chdir(tmp_path)
    yield calls
    assert calls == []
    assert not [f for f in os.listdir(tmp_path) if f.startswith("PWNED")]


def test_malicious_pth_is_refused(no_code_runs):
    path = os.path.join(FIXTURES, "torchvision_malicious.pth")
    with pytest.raises(UnsafePickleError, match=r"posix\.system.*nothing was run"):
        models.load_torchvision("resnet18", path)
    assert no_code_runs == [] and not os.path.exists("PWNED_BY_PICKLE")


class _Eval:
    def __reduce__(self):
        return (eval, ("print('ran')",))


EVAL_PICKLE = pickle.dumps({"w": _Eval()}, protocol=2)  # before any test patches eval


def test_handmade_malicious_archives_are_refused(no_code_runs, tmp_path):
    zipped = tmp_path / "evil.pth"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("archive/data.pkl", EVAL_PICKLE)
    legacy = tmp_path / "evil_legacy.pth"
    with open(legacy, "wb") as f:
        for obj in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(obj, f, protocol=2)
        f.write(EVAL_PICKLE)
    for path in (zipped, legacy):
        with pytest.raises(UnsafePickleError,
                           match=r"(__builtin__|builtins)\.eval.*nothing was run"):
            read_state_dict(path)


def test_pickle_cannot_alter_the_reader_or_call_allowed_objects(tmp_path):
    """BUILD on an allowed storage type (which would change later loads) is refused; calling
    a storage type is a malformed file; a later load still reads correctly."""
    build = (b"\x80\x02ctorch\nFloatStorage\n}X\x05\x00\x00\x00dtype"
             b"X\x03\x00\x00\x00<f8sb.")
    call = b"\x80\x02ctorch\nFloatStorage\n)R."
    for name, payload, error, match in (
            ("build", build, UnsafePickleError, "refusing to set state"),
            ("call", call, ValueError, "malformed torch.save pickle")):
        path = tmp_path / f"{name}.pth"
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", payload)
        with pytest.raises(error, match=match):
            read_state_dict(path)
    got = read_state_dict(os.path.join(FIXTURES, "torchvision_tiny.pth"))
    assert got["weight"].dtype == np.float32


def test_non_tensor_content_and_unknown_files(tmp_path):
    plain = tmp_path / "plain.pth"
    with zipfile.ZipFile(plain, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"epoch": 3}, protocol=2))
    with pytest.raises(ValueError, match=r"not a plain state dict.*'epoch'"):
        read_state_dict(plain)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="neither safetensors nor a torch.save file"):
        read_state_dict(junk)
    with pytest.raises(ValueError, match="is not a file"):
        read_state_dict(tmp_path / "missing.pth")


def zeros_state_dict(name: str) -> dict[str, np.ndarray]:
    shapes = expected_shapes(name, layout_of(name))
    return {k: np.zeros(s, np.float32) for k, s in shapes.items()}


def test_mismatched_state_dict_names_keys_and_shapes():
    weights = zeros_state_dict("resnet18")
    del weights["layer2.0.conv1.weight"]
    weights["layer5.0.conv1.weight"] = np.zeros((1, 1, 3, 3), np.float32)
    weights["layer1.0.bn1.running_var"] = np.zeros((65,), np.float32)
    with pytest.raises(ValueError) as info:
        convert_torchvision("resnet18", weights, layout_of("resnet18"))
    msg = str(info.value)
    assert "missing keys (1): ['layer2.0.conv1.weight (128, 64, 3, 3)']" in msg
    assert "unexpected keys (1): ['layer5.0.conv1.weight (1, 1, 3, 3)']" in msg
    assert "layer1.0.bn1.running_var: file (65,), expected (64,)" in msg


def test_wrong_architecture_and_unknown_name():
    with pytest.raises(ValueError, match=r"resnet18: classifier 'fc.weight' is missing"):
        convert_torchvision("resnet18", zeros_state_dict("vgg11"), layout_of("resnet18"))
    with pytest.raises(ValueError,
                       match=r"missing keys \(80\): \[.layer1.2.bn1.running_mean \(64,\)."):
        convert_torchvision("resnet34", zeros_state_dict("resnet18"), layout_of("resnet34"))
    with pytest.raises(ValueError, match="name 'lenet5' has no torchvision checkpoint"):
        convert_torchvision("lenet5", {}, layout_of("lenet5"))


def test_checkpoints_without_batch_counters_and_other_class_counts():
    """Pre-0.4.1 files lack num_batches_tracked; num_classes comes from the classifier."""
    weights = {k: v for k, v in zeros_state_dict("vgg11_bn").items()
               if not k.endswith("num_batches_tracked")}
    weights["classifier.6.weight"] = np.zeros((10, 4096), np.float32)
    weights["classifier.6.bias"] = np.zeros((10,), np.float32)
    variables = convert_torchvision("vgg11_bn", weights, layout_of("vgg11_bn"))
    assert variables["params"]["classifier"]["kernel"].shape == (4096, 10)


def fake_torch_archive(path, tensors, monkeypatch, storage_numel=None, byteorder=None):
    """A torch.save-style zip written without torch: tensors as (storage data, offset, size,
    stride); storage_numel overrides the element count recorded for storage "0"; byteorder
    "big" stores big-endian floats and says so, as torch does on big-endian hosts."""
    torch_mod, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while writing")

    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    torch_mod.FloatStorage, utils._rebuild_tensor_v2 = FloatStorage, _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch_mod)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)

    class Storage:
        def __init__(self, key, data):
            self.key, self.data = key, data

    class Tensor:
        def __init__(self, storage, offset, size, stride):
            self.args = (storage, offset, size, stride, False, {})

        def __reduce__(self):
            return (_rebuild_tensor_v2, self.args)

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                numel = storage_numel if storage_numel is not None else obj.data.size
                return ("storage", FloatStorage, obj.key, "cpu", numel)
            return None

    buf, storages, state = io.BytesIO(), {}, {}
    for name, (data, offset, size, stride) in tensors.items():
        key = str(len(storages))
        storages[key] = Storage(key, np.asarray(data, ">f4" if byteorder == "big" else "<f4"))
        state[name] = Tensor(storages[key], offset, size, stride)
    Pickler(buf, protocol=2).dump(state)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        if byteorder:
            z.writestr("archive/byteorder", byteorder)
        for key, s in storages.items():
            z.writestr(f"archive/data/{key}", s.data.tobytes())
    monkeypatch.delitem(sys.modules, "torch")
    monkeypatch.delitem(sys.modules, "torch._utils")


def test_tensor_views_are_bounds_checked(tmp_path, monkeypatch):
    data = np.arange(6, dtype=np.float32)
    ok = tmp_path / "ok.pth"
    fake_torch_archive(ok, {"w": (data, 1, (2, 2), (1, 2))}, monkeypatch)
    np.testing.assert_array_equal(read_state_dict(ok)["w"], [[1, 3], [2, 4]])
    past = tmp_path / "past.pth"  # last element 1 + 1*1 + 2*3 = 8 >= 6
    fake_torch_archive(past, {"w": (data, 1, (2, 3), (1, 3))}, monkeypatch)
    with pytest.raises(UnsafePickleError, match="reaches past its storage of 6 elements"):
        read_state_dict(past)
    short = tmp_path / "short.pth"  # the record claims more elements than the file holds
    fake_torch_archive(short, {"w": (data, 0, (6,), (1,))}, monkeypatch, storage_numel=100)
    with pytest.raises(ValueError, match="holds 24 bytes, 100 x 4 expected"):
        read_state_dict(short)


def test_big_endian_archives_are_read(tmp_path, monkeypatch):
    data = np.array([1.5, -2.0, 3.25], np.float32)
    path = tmp_path / "big.pth"
    fake_torch_archive(path, {"w": (data, 0, (3,), (1,))}, monkeypatch, byteorder="big")
    got = read_state_dict(path)["w"]
    assert got.dtype == np.float32 and got.dtype.isnative
    np.testing.assert_array_equal(got, data)
