"""Record PyTorch's windowed-pool outputs and input gradients as a small .npz fixture.

Needs torch, which is never a dependency of poolnets or its tests; run it from a separate
environment:

    python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0 numpy
    /tmp/torchvenv/bin/python tools/make_torch_fixtures_pooling.py

Writes `tests/pooling/fixtures/torch_windowed.npz`: for case `i`, `{i}/x` (channels-last
input), `{i}/g` (output cotangent), `{i}/out`, `{i}/grad` (d sum(g * out) / dx) and, for
index ops, `{i}/indices`; `{i}/config` is the JSON of the call. Inputs are drawn from a
few integers so windows tie often; some cases carry NaN and +-inf.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import torch
import torch.nn.functional as F

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests/pooling/fixtures/torch_windowed.npz"


def channels_last(t: torch.Tensor) -> np.ndarray:
    return np.moveaxis(t.detach().numpy(), 1, -1)


def draw_input(rng, shape, specials):
    x = rng.integers(-2, 3, shape).astype(np.float32)
    if specials:
        x[rng.random(shape) < 0.1] = np.nan
        x[rng.random(shape) < 0.05] = -np.inf
        x[rng.random(shape) < 0.05] = np.inf
    return x


def draw_geometry(rng, n, *, dilation):
    k = [int(v) for v in rng.integers(1, 4, n)]
    s = [int(v) for v in rng.integers(1, 4, n)]
    d = [int(v) for v in rng.integers(1, 3, n)] if dilation else [1] * n
    pad = [int(rng.integers(0, kk // 2 + 1)) for kk in k]  # torch: pad <= kernel // 2
    size = [int(v) for v in rng.integers(3, 8 - n, n)]
    return k, s, d, pad, size


def torch_call(op, n, x, cfg):
    fn = getattr(F, f"{op}{n}d")
    k, s, pad = cfg["window_shape"], cfg["strides"], cfg["padding"]
    if op == "max_pool":
        return fn(x, k, s, pad, cfg["dilation"], cfg["ceil_mode"], return_indices=True)
    if op == "avg_pool":
        extra = {} if n == 1 else {"divisor_override": cfg["divisor_override"]}
        return fn(x, k, s, pad, cfg["ceil_mode"], cfg["count_include_pad"], **extra), None
    if op == "lp_pool":  # lp_pool1d multiplies by kernel_size, so it must be an int
        return fn(x, cfg["p"], k[0] if n == 1 else k, s, cfg["ceil_mode"]), None
    raise ValueError(op)


def make_case(rng, op, n):
    k, s, d, pad, size = draw_geometry(rng, n, dilation=op == "max_pool")
    cfg = {"op": op, "window_shape": k, "strides": s, "padding": pad,
           "ceil_mode": bool(rng.random() < 0.5)}
    if op == "max_pool":
        cfg["dilation"] = d
    if op == "avg_pool":
        cfg["count_include_pad"] = bool(rng.random() < 0.5)
        cfg["divisor_override"] = int(rng.choice([2, 5])) if n > 1 and rng.random() < 0.3 else None
    if op == "lp_pool":
        cfg["p"] = float(rng.choice([1.0, 2.0, 3.0]))
        cfg["padding"] = [0] * n
    shape = (int(rng.integers(1, 3)), int(rng.integers(1, 3)), *size)  # (N, C, *spatial)
    x_np = draw_input(rng, shape, specials=op == "max_pool" and rng.random() < 0.4)
    if op == "lp_pool":
        x_np = np.abs(x_np)
    x = torch.tensor(x_np, requires_grad=True)
    try:
        out, idx = torch_call(op, n, x, cfg)
    except RuntimeError:  # torch rejects (e.g. output too small): draw again
        return None
    g = torch.tensor(rng.standard_normal(tuple(out.shape)).astype(np.float32))
    out.backward(g)
    case = {"x": channels_last(x), "g": channels_last(g), "out": channels_last(out),
            "grad": channels_last(x.grad)}
    if idx is not None:
        case["indices"] = channels_last(idx).astype(np.int32)
        unpool = make_unpool(rng, n, out.detach(), idx, cfg, size)
        if unpool is not None:
            case.update(unpool)
    return cfg, case


def make_unpool(rng, n, values, idx, cfg, size):
    """max_unpool of the pooled values back to the input size (when torch accepts it:
    no dilation) with an explicit output_size; records output and d/d values."""
    if any(d != 1 for d in cfg["dilation"]):
        return None
    values = values.clone().requires_grad_(True)
    fn = getattr(F, f"max_unpool{n}d")
    try:
        up = fn(values, idx, cfg["window_shape"], cfg["strides"], cfg["padding"],
                output_size=size)
    except RuntimeError:
        return None
    gu = torch.tensor(rng.standard_normal(tuple(up.shape)).astype(np.float32))
    up.backward(gu)
    return {"unpool_g": channels_last(gu), "unpool_out": channels_last(up),
            "unpool_grad": channels_last(values.grad), "unpool_size": np.array(size)}


def main():
    rng = np.random.default_rng(20260127)
    arrays, index = {}, 0
    plan = ([("max_pool", n) for n in (1, 2, 3) for _ in range(14)]
            + [("avg_pool", n) for n in (1, 2, 3) for _ in range(10)]
            + [("lp_pool", n) for n in (1, 2, 3) for _ in range(6)])
    for op, n in plan:
        made = None
        while made is None:
            made = make_case(rng, op, n)
        cfg, case = made
        arrays[f"{index}/config"] = np.array(json.dumps(cfg))
        arrays.update({f"{index}/{key}": value for key, value in case.items()})
        index += 1
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {index} cases, {OUT.stat().st_size} bytes, torch {torch.__version__}")


if __name__ == "__main__":
    main()
