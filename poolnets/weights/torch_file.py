"""PyTorch `torch.save` state dicts as NumPy arrays, without PyTorch or running pickle code.

Two formats (`poolnets.weights.reader` tells them from safetensors by their structure):
- zip (torch >= 1.6): `<root>/data.pkl` plus one raw little- or big-endian storage per
  `<root>/data/<key>`, `<root>/byteorder` naming the order (absent means little).
- legacy, which torchvision still serves for some VGG checkpoints: pickles of the magic
  number 0x1950a86a20f9469cfc6c, the protocol version (1001) and system info, the main
  pickle, the list of storage keys, then each storage as an int64 element count followed
  by its bytes (torch/serialization.py, `_legacy_save`).

The pickle is read by an unpickler whose `find_class` resolves only an allow-list:
`collections.OrderedDict`, torch's tensor-rebuild functions (`torch._utils._rebuild_tensor`,
`_rebuild_tensor_v2`, `_rebuild_parameter`) and the typed storage classes (`torch.FloatStorage`,
...), each replaced by a NumPy stand-in defined here; nothing is imported from torch. Any other
global (`os.system`, `builtins.eval`, ...) raises `UnsafePickleError` before it is called,
which is how Python's documentation restricts unpickling ("Restricting Globals").

Unpickling yields records only (storages: key, dtype, size; tensors: offset, size, stride).
Before anything is read or copied out, the caller's `check_shapes` sees every shape (the
torchvision converter checks its layout there), views must lie inside their storages, the
storages must fit in the file (torch writes them once each, uncompressed) and the tensors
may hold at most `MAX_REPEAT` x the elements stored: a small file cannot make a large
allocation (a stride-0 view repeats one element as often as its shape says).
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
import zlib
from collections.abc import Callable
from typing import Any, BinaryIO

import ml_dtypes
import numpy as np

StateDict = dict[str, np.ndarray]
ShapeCheck = Callable[[dict[str, tuple[int, ...]]], None]

# torch's typed storage classes -> NumPy dtypes (little-endian; byte order is applied later).
STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),  # NumPy has no bfloat16; JAX's ml_dtypes
}
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
# Tied weights save one storage under two keys; more repetition than this is not a state dict.
MAX_REPEAT = 2


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """The pickle of a torch file asks for something other than plain tensors."""


class _Sealed:
    """Refuses pickle's BUILD opcode, which would otherwise set attributes on the object."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise UnsafePickleError(f"refusing to set state {state!r} on {type(self).__name__}")


class _StorageType(_Sealed):
    """Stand-in for `torch.<Name>Storage`: only carries the element dtype."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str):
        self.name, self.dtype = name, STORAGE_DTYPES[name]


class _Storage(_Sealed):
    """A storage record: key, dtype, element count; `data` (1-D, native order) once read."""

    __slots__ = ("key", "dtype", "numel", "data")

    def __init__(self, key: str, dtype: np.dtype, numel: int):
        self.key, self.dtype, self.numel, self.data = key, dtype, numel, None

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize


class _View(_Sealed):
    """A tensor record, `torch._utils._rebuild_tensor(_v2)`'s arguments: a strided view of a
    storage, copied out only after every check."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage: Any, offset: Any, size: Any, stride: Any, *_: Any):
        if not isinstance(storage, _Storage):
            raise UnsafePickleError(f"tensor storage is {type(storage).__name__}, not a storage")
        if not (isinstance(offset, int) and offset >= 0 and isinstance(size, tuple)
                and isinstance(stride, tuple) and len(size) == len(stride)
                and all(isinstance(v, int) and v >= 0 for v in size + stride)):
            raise UnsafePickleError(
                f"malformed tensor record: offset={offset!r} size={size!r} stride={stride!r}")
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    @property
    def numel(self) -> int:
        return int(np.prod(self.size, dtype=object))  # Python ints: no overflow

    def check_bounds(self, key: str) -> None:
        if self.numel == 0:
            return
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
        if last >= self.storage.numel:
            raise UnsafePickleError(
                f"tensor {key!r} (offset {self.offset}, size {self.size}, stride "
                f"{self.stride}) reaches past its storage of {self.storage.numel} elements")

    def materialise(self) -> np.ndarray:
        data = self.storage.data
        if self.numel == 0:
            return np.zeros(self.size, data.dtype)
        view = np.lib.stride_tricks.as_strided(
            data[self.offset:], self.size, tuple(s * data.itemsize for s in self.stride),
            writeable=False)
        return np.array(view)


def _rebuild_tensor(*args: Any) -> _View:
    """`torch._utils._rebuild_tensor(_v2)`. A function, not the class: pickle's NEWOBJ on an
    allowed class would make a `_View` without its checks."""
    return _View(*args)


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    """`torch._utils._rebuild_parameter`: an nn.Parameter is its tensor."""
    if not isinstance(data, _View):
        raise UnsafePickleError(f"parameter data is {type(data).__name__}, not a tensor")
    return data


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only `_ALLOWED` globals; each persistent storage id becomes a `_Storage`
    record in `storages` (one per key), read later."""

    def __init__(self, file: BinaryIO, source: str, storages: dict[str, _Storage] | None = None):
        super().__init__(file)
        self._source, self.storages = source, storages
        self._globals = dict(_ALLOWED)  # storage types fresh per load: nothing shared
        self._globals.update({("torch", n): _StorageType(n) for n in STORAGE_DTYPES})

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._globals[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._source}: refusing to unpickle global {module}.{name}: a torch state "
                "dict holds only tensors (allowed: OrderedDict, torch tensor-rebuild "
                "functions, typed storages). The file may try to run code; nothing was run."
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        if self.storages is None or not (
                isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise UnsafePickleError(f"{self._source}: unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid[:5]
        if not (isinstance(storage_type, _StorageType) and isinstance(numel, int)
                and numel >= 0):
            raise UnsafePickleError(f"{self._source}: malformed storage record {pid!r}")
        if len(pid) > 5 and pid[5] is not None:
            raise UnsafePickleError(f"{self._source}: storage views (pre-0.4 files) unsupported")
        storage = self.storages.setdefault(
            str(key), _Storage(str(key), storage_type.dtype, numel))
        if (storage.dtype, storage.numel) != (storage_type.dtype, numel):
            raise UnsafePickleError(f"{self._source}: storage {str(key)!r} recorded twice with "
                                    "different dtypes or sizes")
        return storage

    def load_checked(self) -> Any:
        """Unpickles, reporting a malformed stream (e.g. calling a storage type) as
        ValueError."""
        try:
            return self.load()
        except (UnsafePickleError, ValueError):
            raise
        except Exception as e:  # noqa: BLE001 -- any other failure means a malformed file
            raise ValueError(f"{self._source}: malformed torch.save pickle "
                             f"({type(e).__name__}: {e})") from None


def _views(obj: Any, source: str) -> dict[str, _View]:
    if not isinstance(obj, dict):
        raise ValueError(f"{source}: expected a state dict (str -> tensor), got "
                         f"{type(obj).__name__}")
    bad = [(k, type(v).__name__) for k, v in obj.items()
           if not isinstance(k, str) or not isinstance(v, _View)]
    if bad:
        raise ValueError(
            f"{source}: not a plain state dict; entries that are not tensors: {bad[:5]} "
            "(a training checkpoint? save `model.state_dict()` itself)")
    return dict(obj)


def _check_sizes(views: dict[str, _View], storages: dict[str, _Storage], source: str,
                 file_size: int) -> None:
    """What reading would allocate, bounded by the file's size, from the records alone."""
    for key, view in views.items():
        view.check_bounds(key)
    stored = sum(s.nbytes for s in storages.values())
    if stored > file_size:
        raise ValueError(f"{source}: storages hold {stored} bytes, more than the whole file "
                         f"({file_size} bytes): compressed or overlapping archive members, "
                         "which torch.save does not write")
    held = sum(s.numel for s in storages.values())
    total = sum(v.numel for v in views.values())
    if total > MAX_REPEAT * held:
        largest = sorted(views.items(), key=lambda kv: -kv[1].numel)[:3]
        named = "; ".join(f"{k!r} of shape {v.size}, stride {v.stride}, over a storage of "
                          f"{v.storage.numel}" for k, v in largest)
        raise ValueError(f"{source}: the tensors hold {total} elements, more than "
                         f"{MAX_REPEAT} x the {held} stored in the file (views repeating "
                         f"elements): largest {named}")


def _check_read(raw: bytes, storage: _Storage, source: str) -> None:
    """A short read would leave the strided views reading past the buffer."""
    if len(raw) != storage.nbytes:
        raise ValueError(f"{source}: storage {storage.key!r} is truncated ({len(raw)} of "
                         f"{storage.nbytes} bytes)")


def is_legacy(head: bytes) -> bool:
    """Whether `head` (a file's first 32 bytes) opens with torch's legacy magic-number pickle
    (26 bytes at most: PROTO, FRAME for protocol 4+, LONG1 of 10 bytes, STOP)."""
    if head[:1] != b"\x80":  # pickle's PROTO opcode
        return False
    try:
        return _RestrictedUnpickler(io.BytesIO(head), "header").load() == LEGACY_MAGIC
    except Exception:  # noqa: BLE001 -- any failure: not a legacy torch file
        return False


def read_zip(path: str, check_shapes: ShapeCheck | None = None) -> StateDict:
    """A torch.save zip archive; check_shapes sees `{key: shape}` before anything is read."""
    try:
        return _read_archive(path, check_shapes)
    except (zipfile.BadZipFile, EOFError, NotImplementedError, zlib.error) as e:
        raise ValueError(f"{path}: damaged zip archive ({type(e).__name__}: {e})") from None


def _read_archive(path: str, check_shapes: ShapeCheck | None) -> StateDict:
    file_size = os.path.getsize(path)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise ValueError(f"{path}: a zip file but not a torch.save archive "
                             f"(no <root>/data.pkl; members: {names[:5]})")
        if archive.getinfo(pickles[0]).file_size > file_size:
            raise ValueError(f"{path}: {pickles[0]} expands past the file's size: compressed "
                             "members, which torch.save does not write")
        root = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if root + "byteorder" in names:
            with archive.open(root + "byteorder") as f:
                byteorder = f.read(16).decode(errors="replace").strip()
        if byteorder not in ("little", "big"):
            raise ValueError(f"{path}: unknown byteorder record {byteorder!r}")
        storages: dict[str, _Storage] = {}
        with archive.open(pickles[0]) as f:
            obj = _RestrictedUnpickler(io.BytesIO(f.read()), path, storages).load_checked()
        views = _views(obj, path)
        if check_shapes:
            check_shapes({k: v.size for k, v in views.items()})
        for key, storage in storages.items():
            member = f"{root}data/{key}"
            if member not in names:
                raise UnsafePickleError(f"{path}: storage {key!r} missing from the archive")
            size = archive.getinfo(member).file_size
            if size < storage.nbytes:
                raise ValueError(f"{path}: storage {key!r} holds {size} bytes, "
                                 f"{storage.numel} x {storage.dtype.itemsize} expected")
        _check_sizes(views, storages, path, file_size)
        order = "<" if byteorder == "little" else ">"
        for key, storage in storages.items():
            with archive.open(f"{root}data/{key}") as f:
                raw = f.read(storage.nbytes)
            _check_read(raw, storage, path)
            storage.data = np.frombuffer(raw, storage.dtype.newbyteorder(order)).astype(
                storage.dtype.newbyteorder("="), copy=False)  # read-only; views copy out
    return {k: v.materialise() for k, v in views.items()}


def read_legacy(path: str, check_shapes: ShapeCheck | None = None) -> StateDict:
    """A legacy torch.save file; check_shapes sees `{key: shape}` before anything is read."""
    file_size = os.path.getsize(path)
    with open(path, "rb") as f:
        if _RestrictedUnpickler(f, path).load_checked() != LEGACY_MAGIC:
            raise ValueError(f"{path}: not a legacy torch.save file (no magic number)")
        if _RestrictedUnpickler(f, path).load_checked() != LEGACY_PROTOCOL:
            raise ValueError(f"{path}: unsupported legacy torch.save protocol")
        sys_info = _RestrictedUnpickler(f, path).load_checked()
        if not isinstance(sys_info, dict) or not sys_info.get("little_endian", True):
            raise ValueError(f"{path}: legacy files written on big-endian hosts unsupported")
        storages: dict[str, _Storage] = {}
        views = _views(_RestrictedUnpickler(f, path, storages).load_checked(), path)
        keys = _RestrictedUnpickler(f, path).load_checked()
        if not isinstance(keys, list) or sorted(map(str, keys)) != sorted(storages):
            raise ValueError(f"{path}: storage key list does not match the pickle")
        if check_shapes:
            check_shapes({k: v.size for k, v in views.items()})
        offsets = {}
        for key in map(str, keys):  # each: int64 element count, then the raw elements
            count = struct.unpack("<q", f.read(8).ljust(8, b"\xff"))[0]
            offsets[key] = f.tell()
            if count != storages[key].numel or offsets[key] + storages[key].nbytes > file_size:
                raise ValueError(f"{path}: storage {key!r} is truncated or mis-sized")
            f.seek(storages[key].nbytes, os.SEEK_CUR)
        _check_sizes(views, storages, path, file_size)
        for key, storage in storages.items():
            f.seek(offsets[key])
            raw = f.read(storage.nbytes)
            _check_read(raw, storage, path)
            storage.data = np.frombuffer(raw, storage.dtype).astype(
                storage.dtype.newbyteorder("="), copy=False)
    return {k: v.materialise() for k, v in views.items()}
