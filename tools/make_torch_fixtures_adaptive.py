"""Writes PyTorch reference outputs for the adaptive pools to tests/pooling/fixtures/.

Run with a separate venv that has torch (never a dependency of poolnets or its tests):

    python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0 numpy
    /tmp/torchvenv/bin/python tools/make_torch_fixtures_adaptive.py

Every case stores channels-last arrays (N, *spatial, C): the input `x`, the cotangent `g`,
torch's forward values `y`, for max its `return_indices` output `idx`, and the input
gradient `dx` of sum(g * y). `meta` is a JSON list of {"op", "output_size", "dtype"}.
bfloat16 cases are stored as float32 (exactly representable).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

OUT = Path(__file__).resolve().parents[1] / "tests" / "pooling" / "fixtures" / "adaptive_torch.npz"
CASES_PER_DIM = 8

_FNS = {
    ("avg", 1): F.adaptive_avg_pool1d,
    ("avg", 2): F.adaptive_avg_pool2d,
    ("avg", 3): F.adaptive_avg_pool3d,
    ("max", 1): F.adaptive_max_pool1d,
    ("max", 2): F.adaptive_max_pool2d,
    ("max", 3): F.adaptive_max_pool3d,
}


def _draw(rng: np.random.Generator, n: int):
    longest, most_bins = (9, 11) if n < 3 else (6, 7)  # keeps the 3-d fixtures small
    spatial = tuple(int(v) for v in rng.integers(1, longest, n))
    sizes = []
    for _ in spatial:
        # torch's 1-d pools take no None; the others keep a None dim.
        keep = rng.random() < 0.15 and n > 1
        sizes.append(None if keep else int(rng.integers(1, most_bins)))
    shape = (int(rng.integers(1, 3)), *spatial, int(rng.integers(1, 4)))
    flavour = rng.random()
    if flavour < 0.35:  # ties
        x = rng.integers(-2, 3, shape).astype(np.float32)
    else:
        x = rng.standard_normal(shape).astype(np.float32)
    if flavour > 0.8:  # NaN and infinities
        x.flat[rng.integers(0, x.size, 3)] = rng.choice([np.nan, np.inf, -np.inf], 3)
    if flavour > 0.9:  # several NaNs per bin: torch keeps the last one
        x[rng.random(shape) < 0.4] = np.nan
    return x, tuple(sizes)


def _run(op: str, x: np.ndarray, sizes, g: np.ndarray, dtype: torch.dtype):
    n = len(sizes)
    to_torch = (0, n + 1, *range(1, n + 1))  # (N, *spatial, C) -> (N, C, *spatial)
    to_numpy = (0, *range(2, n + 2), 1)
    xt = torch.tensor(x).permute(to_torch).contiguous().to(dtype).requires_grad_(True)
    size_arg = sizes[0] if n == 1 else sizes
    if op == "max":
        y, idx = _FNS[op, n](xt, size_arg, return_indices=True)
    else:
        y, idx = _FNS[op, n](xt, size_arg), None
    gt = torch.tensor(g).permute(to_torch).to(dtype)
    (y * gt).sum().backward()
    as_np = lambda t: t.detach().float().permute(to_numpy).numpy()  # noqa: E731
    out = {"y": as_np(y), "dx": as_np(xt.grad)}
    if idx is not None:
        out["idx"] = idx.permute(to_numpy).numpy().astype(np.int64)
    return out


def main() -> None:
    rng = np.random.default_rng(20240613)
    arrays: dict[str, np.ndarray] = {}
    meta = []
    for op in ("avg", "max"):
        for n in (1, 2, 3):
            for case in range(CASES_PER_DIM + 2):
                dtype = torch.bfloat16 if case >= CASES_PER_DIM else torch.float32
                x, sizes = _draw(rng, n)
                if dtype == torch.bfloat16:
                    x = np.nan_to_num(x).astype(np.float32)
                    x = torch.tensor(x).to(torch.bfloat16).float().numpy()
                spatial = x.shape[1:-1]
                out_shape = (
                    x.shape[0],
                    *(s if o is None else o for o, s in zip(sizes, spatial, strict=True)),
                    x.shape[-1],
                )
                g = rng.standard_normal(out_shape).astype(np.float32)
                if dtype == torch.bfloat16:
                    g = torch.tensor(g).to(torch.bfloat16).float().numpy()
                key = str(len(meta))
                arrays[f"{key}/x"], arrays[f"{key}/g"] = x, g
                for name, value in _run(op, x, sizes, g, dtype).items():
                    arrays[f"{key}/{name}"] = value
                meta.append(
                    {"op": op, "output_size": list(sizes), "dtype": str(dtype).split(".")[-1]}
                )
    arrays["meta"] = np.array(json.dumps(meta))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {len(meta)} cases to {OUT} with torch {torch.__version__}")


if __name__ == "__main__":
    main()
