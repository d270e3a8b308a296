"""One entry point for state-dict files: the format told from the file's structure.

- safetensors: an 8-byte little-endian header length n (n + 8 <= file size), then n bytes
  of a JSON object; read through the `safetensors` package's NumPy API (which checks that
  the tensors tile the data exactly, so no tensor outgrows the file).
- `torch.save` zip: a zip archive, its first local file header (`PK\\x03\\x04`) first.
- `torch.save` legacy: a pickle of torch's magic number first.
Nothing is decided from a file name or a single byte: a safetensors header of 28,800 bytes
starts with 0x80, pickle's PROTO opcode. Floating-point tensors holding NaN or Inf are
refused by name at load, where a flipped bit is still traceable to its file.
"""

from __future__ import annotations

import json
import os
import struct

from poolnets.weights.finite import nonfinite_report
from poolnets.weights.torch_file import ShapeCheck, StateDict, is_legacy, read_legacy, read_zip

SAFETENSORS_MAX_HEADER = 100_000_000  # the safetensors package refuses larger headers
NOT_A_CHECKPOINT = "neither safetensors nor a torch.save file"


def _read_safetensors(path: str, check_shapes: ShapeCheck | None) -> StateDict:
    from safetensors import safe_open

    try:
        with safe_open(path, framework="numpy") as f:
            keys = list(f.keys())
            if check_shapes:  # header only: nothing read yet
                check_shapes({k: tuple(f.get_slice(k).get_shape()) for k in keys})
            return {k: f.get_tensor(k) for k in keys}
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 -- safetensors raises its own error types
        raise ValueError(f"{path}: malformed safetensors file ({e})") from None


def sniff(path: str) -> str | None:
    """"safetensors", "zip" or "legacy" from the file's structure; None for anything else.

    Unambiguous: a zip's byte 8 is its compression method (0 or 8) and a legacy file's is
    part of the magic number, never the `{` that opens a safetensors header."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(32)
        (length,) = struct.unpack("<Q", head[:8].ljust(8, b"\xff"))
        if head[8:9] == b"{" and length + 8 <= size and length <= SAFETENSORS_MAX_HEADER:
            f.seek(8)
            try:
                if isinstance(json.loads(f.read(length)), dict):
                    return "safetensors"
            except ValueError:  # not JSON (UnicodeDecodeError is a ValueError too)
                pass
    if head[:4] == b"PK\x03\x04":
        return "zip"
    return "legacy" if is_legacy(head) else None


def read_state_dict(path: str | os.PathLike, *, check_shapes: ShapeCheck | None = None,
                    allow_nonfinite: bool = False) -> StateDict:
    """Reads `path` (safetensors or torch.save) into `{name: np.ndarray}` without torch.

    check_shapes: called with `{name: shape}` before anything is read; a ValueError it
        raises is re-raised naming the file (e.g. an architecture's expected layout).
    allow_nonfinite: if False (default), a floating-point tensor holding NaN or Inf raises
        ValueError naming it.
    Raises UnsafePickleError (a ValueError) for a pickle that references anything but plain
    tensors, ValueError for a file of another kind, content other than str -> tensor, or
    tensors that would hold more than the file could store.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"path {path!r} is not a file")
    kind = sniff(path)
    if kind is None:
        with open(path, "rb") as f:
            head = f.read(8)
        raise ValueError(f"{path}: {NOT_A_CHECKPOINT} (first bytes {head.hex(' ') or 'none'}; "
                         "expected a safetensors header, a zip archive or a legacy torch.save "
                         "pickle)")

    def checked(shapes: dict[str, tuple[int, ...]]) -> None:
        try:
            check_shapes(shapes)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    reader = {"safetensors": _read_safetensors, "zip": read_zip, "legacy": read_legacy}[kind]
    state_dict = reader(path, checked if check_shapes else None)
    if not allow_nonfinite and (report := nonfinite_report(state_dict, path)):
        raise ValueError(report)
    return state_dict
