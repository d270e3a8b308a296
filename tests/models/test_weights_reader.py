"""The weights reader on hostile and damaged files: format sniffing by structure, memory
bounded before anything is read, non-finite values named at load. No torch: every torch.save
file here is written byte by byte (pickle opcodes inside a zip, or the legacy stream)."""

from __future__ import annotations

import json
import pickle
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest

from poolnets import models
from poolnets.models.nnx.pretrained import torchvision_layout
from poolnets.weights import read_state_dict
from poolnets.weights.checkpoint import restore_variables, save_variables

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def safetensors_bytes(header_length: int, values: np.ndarray) -> bytes:
    """A safetensors file of one float32 tensor "w" whose JSON header, padded with spaces
    (JSON whitespace), is exactly `header_length` bytes."""
    header = json.dumps({"w": {"dtype": "F32", "shape": list(values.shape),
                               "data_offsets": [0, values.nbytes]}}).encode()
    assert len(header) <= header_length
    return (struct.pack("<Q", header_length) + header.ljust(header_length)
            + values.astype("<f4").tobytes())


def test_safetensors_of_every_header_length_low_byte(tmp_path):
    """The header length is the file's first 8 bytes; a first byte of 0x80 (pickle's PROTO
    opcode) used to send the file to the legacy torch reader."""
    values = np.array([1.5, -2.0], np.float32)
    lengths = [256 + low for low in range(256)] + [0x0280, 28_800]  # 80 02: PROTO 2
    failures = []
    for length in lengths:
        path = tmp_path / f"h{length}.safetensors"
        path.write_bytes(safetensors_bytes(length, values))
        try:
            np.testing.assert_array_equal(read_state_dict(path)["w"], values)
        except Exception as e:  # noqa: BLE001 -- collect every failing length
            failures.append(f"{length} ({path.read_bytes()[:2].hex()}): {e}")
    assert failures == []


def test_safetensors_package_file_starting_with_0x80(tmp_path):
    """The same with a file written by the safetensors package (headers padded to 8)."""
    from safetensors.numpy import save_file

    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    for n in range(1, 200):
        path = tmp_path / "w.safetensors"
        save_file({"k" * n: values}, str(path))
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no key length gave a header length with low byte 0x80")
    np.testing.assert_array_equal(read_state_dict(path)["k" * n], values)


@pytest.mark.parametrize(("content", "why"), [
    (b"", "empty"),
    (b"\x80\x02K\x01.", "a pickle, but not torch's legacy magic number"),
    (b"\x80\x02\x00\x00\x00\x00\x00\x00{not json", "safetensors-like, header not JSON"),
    (struct.pack("<Q", 1000) + b'{"w": 1}', "header length past the end of the file"),
    (struct.pack("<Q", 8) + b"[1, 2]  ", "header is JSON but not an object"),
])
def test_unknown_formats_name_the_file(tmp_path, content, why):
    path = tmp_path / "mystery.bin"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"mystery\.bin.*neither safetensors nor a torch\.save"):
        read_state_dict(path)


def test_malformed_safetensors_is_a_value_error(tmp_path):
    """A header that parses but whose offsets do not fit the data: the library's error, as a
    ValueError naming the file."""
    good = safetensors_bytes(64, np.zeros(4, np.float32))
    path = tmp_path / "cut.safetensors"
    path.write_bytes(good[:-4])
    with pytest.raises(ValueError, match=r"cut\.safetensors: malformed safetensors file"):
        read_state_dict(path)


# --- torch.save files by hand ----------------------------------------------------------

def _text(s: str) -> bytes:
    return b"X" + struct.pack("<I", len(s.encode())) + s.encode()


def _ints(values: tuple[int, ...]) -> bytes:
    return b"(" + b"".join(b"J" + struct.pack("<i", v) for v in values) + b"t"


def state_dict_pickle(tensors: dict[str, tuple[str, int, tuple, tuple]],
                      numels: dict[str, int]) -> bytes:
    """Protocol-2 opcodes of {key: torch._utils._rebuild_tensor_v2(storage, offset, size,
    stride, False, OrderedDict())} as torch.save writes them; tensors maps key -> (storage
    key, offset, size, stride); every storage is a FloatStorage of numels[storage key]."""
    out = b"\x80\x02}"  # PROTO 2, EMPTY_DICT
    for key, (storage, offset, size, stride) in tensors.items():
        pid = (b"(" + _text("storage") + b"ctorch\nFloatStorage\n" + _text(storage)
               + _text("cpu") + b"J" + struct.pack("<i", numels[storage]) + b"tQ")
        out += (_text(key) + b"ctorch._utils\n_rebuild_tensor_v2\n(" + pid
                + b"J" + struct.pack("<i", offset) + _ints(size) + _ints(stride)
                + b"\x89ccollections\nOrderedDict\n)RtRs")  # False, OrderedDict(); call; set
    return out + b"."


def write_zip(path, tensors, storages: dict[str, np.ndarray],
              compression: int = zipfile.ZIP_STORED) -> None:
    numels = {k: v.size for k, v in storages.items()}
    with zipfile.ZipFile(path, "w", compression) as z:
        z.writestr("archive/data.pkl", state_dict_pickle(tensors, numels))
        for key, data in storages.items():
            z.writestr(f"archive/data/{key}", data.astype("<f4").tobytes())


def write_legacy(path, tensors, storages: dict[str, np.ndarray]) -> None:
    numels = {k: v.size for k, v in storages.items()}
    with open(path, "wb") as f:
        for obj in (LEGACY_MAGIC, 1001, {"little_endian": True}):
            pickle.dump(obj, f, protocol=2)
        f.write(state_dict_pickle(tensors, numels))
        pickle.dump(list(storages), f, protocol=2)
        for data in storages.values():
            f.write(struct.pack("<q", data.size) + data.astype("<f4").tobytes())


WRITERS = {"zip": write_zip, "legacy": write_legacy}
GIANT = {"fc.weight": ("0", 0, (16384, 16384), (0, 0))}  # 2^28 copies of one float: 1 GiB


def peak_bytes(fn, *args) -> tuple[int, str]:
    """Peak traced allocation while fn(*args) raises ValueError (NumPy reports its buffers)."""
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as info:
            fn(*args)
        return tracemalloc.get_traced_memory()[1], str(info.value)
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("kind", WRITERS)
def test_stride_zero_view_refused_before_allocating(tmp_path, kind):
    """A (16384, 16384) stride-0 view of a one-element storage stays inside its storage but
    would copy out 1 GiB: refused first, naming the key and shape, in well under 1 GiB."""
    path = tmp_path / f"giant_{kind}.pth"
    WRITERS[kind](path, GIANT, {"0": np.ones(1, np.float32)})
    assert path.stat().st_size < 1024
    peak, message = peak_bytes(read_state_dict, path)
    assert "'fc.weight'" in message and "(16384, 16384)" in message, message
    assert peak < 16 * 2**20, peak


def test_stride_zero_view_refused_by_the_architecture_check(tmp_path):
    """Through load_torchvision the expected layout refuses the shape before the storage
    is read; the error starts with the file, then the key, its shape and the layout's."""
    path = tmp_path / "giant.pth"
    write_zip(path, {"fc.weight": ("0", 0, (1000, 2**18), (0, 0))}, {"0": np.ones(1, np.float32)})
    torchvision_layout("resnet18", 1000)  # the layout's (cached) eval_shape out of the measurement
    peak, message = peak_bytes(models.load_torchvision, "resnet18", path)
    assert message.startswith(  # the shape first: train.py's init_from error keeps 300 chars
        f"{path}: state dict does not match torchvision resnet18: wrong shapes (1): "
        "['fc.weight: file (1000, 262144), expected (1000, 512)']; missing keys (101)"), message
    assert peak < 16 * 2**20, peak


def test_many_keys_viewing_one_storage_are_refused(tmp_path):
    """Each view fits its storage, but 300 keys over one 64 Ki-element storage would copy it
    300 times: the tensors may hold at most twice what the file stores."""
    tensors = {f"w{i}": ("0", 0, (65536,), (1,)) for i in range(300)}
    path = tmp_path / "shared.pth"
    write_zip(path, tensors, {"0": np.zeros(65536, np.float32)})
    with pytest.raises(ValueError, match=r"shared\.pth: the tensors hold 19660800 elements"):
        read_state_dict(path)
    tied = tmp_path / "tied.pth"  # two keys over one storage, as tied weights are saved
    write_zip(tied, {"a": ("0", 0, (4,), (1,)), "b": ("0", 0, (2, 2), (2, 1))},
              {"0": np.arange(4, dtype=np.float32)})
    got = read_state_dict(tied)
    np.testing.assert_array_equal(got["b"], [[0, 1], [2, 3]])


def test_storages_larger_than_the_file_are_refused(tmp_path):
    """A deflated storage of 16 MiB of zeros in a file of a few KiB (a zip bomb): torch
    writes storages uncompressed, so the bytes a file can hold bound what is read."""
    path = tmp_path / "bomb.pth"
    n = 4 * 2**20
    write_zip(path, {"w": ("0", 0, (n,), (1,))}, {"0": np.zeros(n, np.float32)},
              zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 64 * 1024
    peak, message = peak_bytes(read_state_dict, path)
    assert "bomb.pth: storages hold 16777216 bytes, more than the whole file" in message
    assert peak < 4 * 2**20, peak


def test_newobj_cannot_skip_the_tensor_record_checks(tmp_path):
    """NEWOBJ (`cls.__new__(cls)`) on an allowed global must not make a tensor record
    without its checks: a malformed file, reported as such."""
    path = tmp_path / "newobj.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}" + _text("w")
                   + b"ctorch._utils\n_rebuild_tensor_v2\n)\x81s.")
    with pytest.raises(ValueError, match=r"newobj\.pth: malformed torch\.save pickle"):
        read_state_dict(path)


# --- non-finite values -----------------------------------------------------------------

def test_non_finite_tensors_are_named(tmp_path):
    from safetensors.numpy import save_file

    weights = {f"layer{i}.weight": np.ones((2, 2), np.float32) for i in range(9)}
    weights["layer0.weight"][0, 0] = np.nan
    weights["layer3.weight"][1] = np.inf
    for i in range(4, 9):
        weights[f"layer{i}.weight"][0, 1] = -np.inf if i % 2 else np.nan
    weights["half"] = np.array([np.nan], np.float16)
    weights["count"] = np.array(7, np.int64)
    path = tmp_path / "flipped.safetensors"
    save_file(weights, str(path))
    with pytest.raises(ValueError) as info:
        read_state_dict(path)
    message = str(info.value)
    assert message.startswith(f"{path}: 8 tensors hold NaN or Inf (a damaged file?): "
                              "'half' (1 NaN), 'layer0.weight' (1 NaN), "
                              "'layer3.weight' (2 Inf), 'layer4.weight' (1 NaN), "
                              "'layer5.weight' (1 Inf) and 3 more"), message
    assert "layer1" not in message and "count" not in message
    got = read_state_dict(path, allow_nonfinite=True)
    assert np.isnan(got["layer0.weight"][0, 0])


def test_non_finite_tensors_in_torch_files(tmp_path):
    values = np.array([1.0, np.nan, 3.0], np.float32)
    for kind, write in WRITERS.items():
        path = tmp_path / f"nan_{kind}.pth"
        write(path, {"bn.running_var": ("0", 0, (3,), (1,))}, {"0": values})
        with pytest.raises(ValueError, match=r"1 tensors? holds? NaN or Inf.*'bn\.running_var'"):
            read_state_dict(path)


def test_restored_variables_with_nan_are_refused(tmp_path):
    variables = {"params": {"fc": {"kernel": np.array([[1.0, np.nan]], np.float32),
                                   "bias": np.zeros(2, np.float32)}}}
    path = save_variables(tmp_path / "ckpt", variables)
    with pytest.raises(ValueError,
                       match=r"ckpt: 1 tensor holds NaN or Inf.*'params/fc/kernel' \(1 NaN\)"):
        restore_variables(path)
    restored = restore_variables(path, allow_nonfinite=True)
    assert np.isnan(restored["params"]["fc"]["kernel"][0, 1])
