"""Reading PyTorch state dicts as NumPy arrays, without PyTorch and without running pickle code.

Two formats:
- safetensors (`*.safetensors`): through the `safetensors` package's NumPy API.
- `torch.save` files (`*.pth`, `*.pt`): the zip format of torch >= 1.6 (`<root>/data.pkl`
  plus one raw little- or big-endian storage per `<root>/data/<key>`, `<root>/byteorder`
  naming the order; absent means little) and the legacy format of older torch (magic
  number, protocol and system-info pickles, the main pickle, the list of storage keys, then
  each storage as an int64 element count followed by its bytes), which torchvision still
  serves for some VGG checkpoints.

The pickle is read by an unpickler whose `find_class` resolves only an allow-list:
`collections.OrderedDict`, torch's tensor-rebuild functions (`torch._utils._rebuild_tensor`,
`_rebuild_tensor_v2`, `_rebuild_parameter`) and the typed storage classes (`torch.FloatStorage`,
...), each replaced by a NumPy stand-in defined here; nothing is imported from torch. Any other
global (`os.system`, `builtins.eval`, ...) raises `UnsafePickleError` before it is called,
which is how Python's documentation restricts unpickling ("Restricting Globals"). Tensor
views are bounds-checked against their storage before they are read.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Any, BinaryIO

import ml_dtypes
import numpy as np

StateDict = dict[str, np.ndarray]

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
    """A flat storage: a 1-D array of its element dtype."""

    __slots__ = ("data",)

    def __init__(self, data: np.ndarray):
        self.data = data


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> np.ndarray:
    """`torch._utils._rebuild_tensor(_v2)`: a strided view of a storage, checked, copied."""
    if not isinstance(storage, _Storage):
        raise UnsafePickleError(f"tensor storage is {type(storage).__name__}, not a storage")
    if not (isinstance(offset, int) and isinstance(size, tuple) and isinstance(stride, tuple)
            and len(size) == len(stride)
            and all(isinstance(v, int) and v >= 0 for v in size + stride)):
        raise UnsafePickleError(
            f"malformed tensor record: offset={offset!r} size={size!r} stride={stride!r}")
    data = storage.data
    if 0 in size:
        return np.zeros(size, data.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if offset < 0 or last >= data.size:
        raise UnsafePickleError(
            f"tensor view (offset {offset}, size {size}, stride {stride}) reaches past its "
            f"storage of {data.size} elements")
    view = np.lib.stride_tricks.as_strided(
        data[offset:], size, tuple(s * data.itemsize for s in stride), writeable=False)
    return np.array(view)


class _Deferred(_Sealed):
    """A tensor of a legacy file, whose storages follow the pickle: rebuilt after reading."""

    __slots__ = ("storage", "record")

    def __init__(self, storage: _Storage, record: tuple):
        if not isinstance(storage, _Storage) or len(record) < 3:
            raise UnsafePickleError(f"malformed tensor record ({type(storage).__name__}, "
                                    f"{record!r})")
        self.storage, self.record = storage, record

    def rebuild(self) -> np.ndarray:
        return _rebuild_tensor(self.storage, *self.record)


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    """`torch._utils._rebuild_parameter`: an nn.Parameter is its tensor."""
    if not isinstance(data, np.ndarray | _Deferred):
        raise UnsafePickleError(f"parameter data is {type(data).__name__}, not a tensor")
    return data


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only `_ALLOWED` globals; storages come from `load_storage(key, type, numel)`.

    rebuild: the stand-in for torch's tensor-rebuild functions.
    """

    def __init__(self, file: BinaryIO, source: str, load_storage: Any = None,
                 rebuild: Any = _rebuild_tensor):
        super().__init__(file)
        self._load_storage, self._source = load_storage, source
        self._globals = dict(_ALLOWED)  # storage types fresh per load: nothing shared
        self._globals.update({("torch", n): _StorageType(n) for n in STORAGE_DTYPES})
        self._globals[("torch._utils", "_rebuild_tensor")] = rebuild
        self._globals[("torch._utils", "_rebuild_tensor_v2")] = rebuild

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
        if self._load_storage is None or not (
                isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise UnsafePickleError(f"{self._source}: unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid[:5]
        if not isinstance(storage_type, _StorageType) or not isinstance(numel, int):
            raise UnsafePickleError(f"{self._source}: malformed storage record {pid!r}")
        if len(pid) > 5 and pid[5] is not None:
            raise UnsafePickleError(f"{self._source}: storage views (pre-0.4 files) unsupported")
        return self._load_storage(str(key), storage_type, numel)


def _check_state_dict(obj: Any, source: str) -> StateDict:
    if not isinstance(obj, dict):
        raise ValueError(f"{source}: expected a state dict (str -> tensor), got "
                         f"{type(obj).__name__}")
    bad = [(k, type(v).__name__) for k, v in obj.items()
           if not isinstance(k, str) or not isinstance(v, np.ndarray)]
    if bad:
        raise ValueError(
            f"{source}: not a plain state dict; entries that are not tensors: {bad[:5]} "
            "(a training checkpoint? save `model.state_dict()` itself)")
    return dict(obj)


def _read_zip(path: str) -> StateDict:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise ValueError(f"{path}: a zip file but not a torch.save archive "
                             f"(no <root>/data.pkl; members: {names[:5]})")
        root = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if root + "byteorder" in names:
            byteorder = archive.read(root + "byteorder").decode().strip()
        if byteorder not in ("little", "big"):
            raise ValueError(f"{path}: unknown byteorder record {byteorder!r}")
        storages: dict[str, _Storage] = {}

        def load_storage(key: str, storage_type: _StorageType, numel: int) -> _Storage:
            if key not in storages:
                member = f"{root}data/{key}"
                if member not in names:
                    raise UnsafePickleError(f"{path}: storage {key!r} missing from the archive")
                dtype = storage_type.dtype.newbyteorder("<" if byteorder == "little" else ">")
                raw = archive.read(member)
                if len(raw) < numel * dtype.itemsize:
                    raise ValueError(f"{path}: storage {key!r} holds {len(raw)} bytes, "
                                     f"{numel} x {dtype.itemsize} expected")
                data = np.frombuffer(raw, dtype, count=numel)
                storages[key] = _Storage(data.astype(dtype.newbyteorder("=")))
            return storages[key]

        with archive.open(pickles[0]) as f:
            obj = _load(_RestrictedUnpickler(io.BytesIO(f.read()), path, load_storage))
    return _check_state_dict(obj, path)


def _load(unpickler: _RestrictedUnpickler) -> Any:
    """Unpickles, reporting a malformed stream (e.g. calling a storage type) as ValueError."""
    try:
        return unpickler.load()
    except (UnsafePickleError, ValueError):
        raise
    except Exception as e:  # noqa: BLE001 -- any other failure means a malformed file
        raise ValueError(f"{unpickler._source}: malformed torch.save pickle "
                         f"({type(e).__name__}: {e})") from None


def _read_legacy(path: str) -> StateDict:
    with open(path, "rb") as f:
        if _load(_RestrictedUnpickler(f, path)) != LEGACY_MAGIC:
            raise ValueError(f"{path}: neither a zip archive nor a legacy torch.save file")
        if _load(_RestrictedUnpickler(f, path)) != LEGACY_PROTOCOL:
            raise ValueError(f"{path}: unsupported legacy torch.save protocol")
        sys_info = _load(_RestrictedUnpickler(f, path))
        if not isinstance(sys_info, dict) or not sys_info.get("little_endian", True):
            raise ValueError(f"{path}: legacy files written on big-endian hosts unsupported")
        pending: dict[str, tuple[_StorageType, int, _Storage]] = {}

        def load_storage(key: str, storage_type: _StorageType, numel: int) -> _Storage:
            if key not in pending:
                pending[key] = (storage_type, numel, _Storage(np.empty(0)))
            return pending[key][2]

        obj = _load(_RestrictedUnpickler(f, path, load_storage,
                                         lambda storage, *record: _Deferred(storage, record)))
        keys = _load(_RestrictedUnpickler(f, path))
        if not isinstance(keys, list) or sorted(map(str, keys)) != sorted(pending):
            raise ValueError(f"{path}: storage key list does not match the pickle")
        for key in map(str, keys):  # each: int64 element count, then the raw elements
            storage_type, numel, storage = pending[key]
            (count,) = struct.unpack("<q", f.read(8))
            raw = f.read(count * storage_type.dtype.itemsize)
            if count != numel or len(raw) != count * storage_type.dtype.itemsize:
                raise ValueError(f"{path}: storage {key!r} is truncated or mis-sized")
            storage.data = np.frombuffer(raw, storage_type.dtype).astype(
                storage_type.dtype.newbyteorder("="))
    if isinstance(obj, dict):
        obj = {k: v.rebuild() if isinstance(v, _Deferred) else v for k, v in obj.items()}
    return _check_state_dict(obj, path)


def read_state_dict(path: str | os.PathLike) -> StateDict:
    """Reads `path` (safetensors or torch.save) into `{name: np.ndarray}` without torch.

    Raises UnsafePickleError (a ValueError) for a pickle that references anything but plain
    tensors, ValueError for a file of another kind or content other than str -> tensor.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"path {path!r} is not a file")
    with open(path, "rb") as f:
        magic = f.read(2)
    if zipfile.is_zipfile(path):
        return _read_zip(path)
    if magic[:1] == b"\x80":  # PROTO opcode: a legacy torch.save stream of pickles
        return _read_legacy(path)
    from safetensors.numpy import load_file

    try:
        tensors = load_file(path)
    except Exception as e:  # safetensors raises its own error types
        raise ValueError(f"{path}: neither safetensors nor a torch.save file ({e})") from None
    return _check_state_dict(tensors, path)
