"""Writes reference outputs of torchvision's RoI ops and antialiased-cnns' BlurPool.

Not part of the package or the test suite (which never import torch): run it from a
separate venv holding torch, torchvision and antialiased-cnns, e.g.

    python3 -m venv /tmp/tvvenv
    /tmp/tvvenv/bin/pip install torch==2.14.1 torchvision==0.29.1 numpy antialiased-cnns
    /tmp/tvvenv/bin/python tools/make_torchvision_fixtures_roi.py

Output: tests/pooling/fixtures/torchvision_roi.npz and antialiased_blur.npz, read by
tests/pooling/test_roi.py and tests/pooling/test_blur.py. Arrays are stored channels-last.
Inputs are seeded, so rerunning reproduces the files.
"""

from __future__ import annotations

import pathlib

import numpy as np
import torch
import torchvision
from torchvision.ops import roi_align, roi_pool

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "pooling" / "fixtures"

# (output_size, spatial_scale, sampling_ratio, aligned)
ALIGN_CONFIGS = [
    ((2, 3), 1.0, -1, False),
    ((2, 3), 1.0, -1, True),
    ((3, 2), 0.5, 2, False),
    ((3, 3), 0.5, 0, True),
    ((1, 1), 1.0, 3, True),
    ((4, 4), 0.25, -1, False),
]
# (output_size, spatial_scale)
POOL_CONFIGS = [((2, 3), 1.0), ((3, 2), 0.5), ((4, 4), 0.25), ((1, 1), 1.0)]


def random_boxes(
    rng: np.random.Generator, k: int, n: int, extent: float, inverted: bool
) -> np.ndarray:
    """Boxes inside and outside the image, tiny, on half-pixel corners, and (if `inverted`)
    with x2 < x1 or y2 < y1 (torchvision's aligned adaptive kernel cannot take those: a
    negative sample count on one axis makes it allocate a negative-size buffer)."""
    idx = rng.integers(0, n, size=k).astype(np.float32)
    corners = rng.uniform(-0.3 * extent, 1.3 * extent, size=(k, 4)).astype(np.float32)
    ordered = np.concatenate([np.minimum(corners[:, :2], corners[:, 2:]),
                              np.maximum(corners[:, :2], corners[:, 2:])], axis=1)
    if inverted:
        ordered[: k // 2] = corners[: k // 2]
    ordered[-4:] = np.round(ordered[-4:] * 2) / 2  # exact halves: rounding rules
    ordered[-2, 2:] = ordered[-2, :2] + 0.25  # tiny box
    return np.concatenate([idx[:, None], ordered], axis=1)


def roi_fixtures(rng: np.random.Generator) -> dict[str, np.ndarray]:
    feats = rng.normal(size=(2, 3, 7, 9)).astype(np.float32)  # torch NCHW
    out = {"features": feats.transpose(0, 2, 3, 1)}
    t = torch.from_numpy(feats).requires_grad_(True)
    for i, (size, scale, ratio, aligned) in enumerate(ALIGN_CONFIGS):
        boxes = random_boxes(rng, 24, 2, 12.0 / scale, inverted=not aligned or ratio > 0)
        out[f"align{i}_boxes"] = boxes
        res = roi_align(t, torch.from_numpy(boxes), size, scale, ratio, aligned)
        cot = rng.normal(size=res.shape).astype(np.float32)
        (grad,) = torch.autograd.grad((res * torch.from_numpy(cot)).sum(), t)
        out[f"align{i}"] = res.detach().numpy().transpose(0, 2, 3, 1)
        out[f"align{i}_cot"] = cot.transpose(0, 2, 3, 1)
        out[f"align{i}_grad"] = grad.numpy().transpose(0, 2, 3, 1)
    for i, (size, scale) in enumerate(POOL_CONFIGS):
        boxes = random_boxes(rng, 24, 2, 12.0 / scale, inverted=True)
        out[f"pool{i}_boxes"] = boxes
        res = roi_pool(t, torch.from_numpy(boxes), size, scale)
        cot = rng.normal(size=res.shape).astype(np.float32)
        (grad,) = torch.autograd.grad((res * torch.from_numpy(cot)).sum(), t)
        out[f"pool{i}"] = res.detach().numpy().transpose(0, 2, 3, 1)
        out[f"pool{i}_cot"] = cot.transpose(0, 2, 3, 1)
        out[f"pool{i}_grad"] = grad.numpy().transpose(0, 2, 3, 1)
    out["align_configs"] = np.array([(*s, sc, r, a) for s, sc, r, a in ALIGN_CONFIGS], np.float64)
    out["pool_configs"] = np.array([(*s, sc) for s, sc in POOL_CONFIGS], np.float64)
    return out


def blur_fixtures(rng: np.random.Generator) -> dict[str, np.ndarray]:
    from antialiased_cnns.blurpool import BlurPool, BlurPool1D

    x2 = rng.normal(size=(2, 3, 9, 8)).astype(np.float32)
    x1 = rng.normal(size=(2, 3, 11)).astype(np.float32)
    out = {"x2": x2.transpose(0, 2, 3, 1), "x1": x1.transpose(0, 2, 1)}
    for pad in ("reflect", "replicate", "zero"):
        for size in range(1, 8):
            for stride in (2, 3):
                key = f"{pad}_{size}_{stride}"
                args = {"pad_type": pad, "filt_size": size, "stride": stride}
                with torch.no_grad():
                    y2 = BlurPool(3, **args)(torch.from_numpy(x2))
                    y1 = BlurPool1D(3, **args)(torch.from_numpy(x1))
                out[f"blur2d_{key}"] = y2.numpy().transpose(0, 2, 3, 1)
                out[f"blur1d_{key}"] = y1.numpy().transpose(0, 2, 1)
    return out


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20190605)
    versions = {"torch_version": np.array(torch.__version__),
                "torchvision_version": np.array(torchvision.__version__)}
    np.savez_compressed(OUT / "torchvision_roi.npz", **roi_fixtures(rng), **versions)
    np.savez_compressed(OUT / "antialiased_blur.npz", **blur_fixtures(rng), **versions)
    print("wrote", sorted(p.name for p in OUT.glob("*.npz")))


if __name__ == "__main__":
    main()
