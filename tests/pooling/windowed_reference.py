"""Brute-force NumPy references for the windowed pools: explicit loops over output cells
and window taps, with their own padding/ceil/output-size arithmetic (nothing from
`poolnets.pooling.geometry`), following PyTorch's CPU kernels tap by tap."""

from __future__ import annotations

import itertools
import math

import numpy as np


def same_pads(length: int, eff: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME rule: output ceil(L / s), extra padding element at the end."""
    out = math.ceil(length / stride)
    total = max((out - 1) * stride + eff - length, 0)
    return total // 2, total - total // 2


def explicit_pads(padding, lengths, effs, strides):
    n = len(lengths)
    if padding == "VALID":
        return [(0, 0)] * n
    if padding == "SAME":
        return [same_pads(*a) for a in zip(lengths, effs, strides, strict=True)]
    if isinstance(padding, int):
        return [(padding, padding)] * n
    return [tuple(p) if isinstance(p, tuple | list) else (p, p) for p in padding]


def count_windows(length, eff, stride, lo, hi, ceil_mode):
    """Enumerate window starts (padded coordinates) instead of using a closed formula."""
    padded = length + lo + hi
    starts = []
    while starts == [] or starts[-1] + stride + eff <= padded:
        starts.append(0 if not starts else starts[-1] + stride)
    if starts[0] + eff > padded:
        starts = []
    if ceil_mode and starts and starts[-1] + eff < padded:
        # ceil rounding admits one more, partial window ...
        starts.append(starts[-1] + stride)
    if ceil_mode and starts and starts[-1] >= length + lo:
        # ... and PyTorch drops the last window once if it starts in the right padding
        starts.pop()
    if ceil_mode and not starts and eff <= padded + stride - 1 and 0 < length + lo:
        starts = [0]  # a single window overhanging a padded input shorter than it
    return len(starts)


class Windows:
    """All windows of one configuration: for each output cell, its taps in row-major
    order as (in_bounds_of_padding, input_coords_or_None)."""

    def __init__(self, spatial, window, strides, dilation, padding, ceil_mode):
        n = len(spatial)
        self.spatial, self.window, self.strides = tuple(spatial), tuple(window), tuple(strides)
        effs = [d * (k - 1) + 1 for k, d in zip(window, dilation, strict=True)]
        self.pads = explicit_pads(padding, spatial, effs, strides)
        self.out = tuple(
            count_windows(length, e, s, lo, hi, ceil_mode)
            for length, e, s, (lo, hi) in zip(spatial, effs, strides, self.pads, strict=True)
        )
        self.cells = {}
        for cell in itertools.product(*(range(o) for o in self.out)):
            taps = []
            for offs in itertools.product(*(range(k) for k in window)):
                coord = tuple(cell[a] * strides[a] - self.pads[a][0] + offs[a] * dilation[a]
                              for a in range(n))
                in_pad = all(-self.pads[a][0] <= coord[a] < spatial[a] + self.pads[a][1]
                             for a in range(n))
                real = all(0 <= coord[a] < spatial[a] for a in range(n))
                taps.append((in_pad, coord if real else None))
            self.cells[cell] = taps

    def flat(self, coord):
        return int(np.ravel_multi_index(coord, self.spatial))


def _planes(x, n):
    """Yield (plane_index, plane) with plane shape spatial, over flattened batch x feature."""
    batch = x.shape[: x.ndim - n - 1]
    xb = x.reshape((-1,) + x.shape[x.ndim - n - 1 :])
    for b in range(xb.shape[0]):
        for c in range(xb.shape[-1]):
            yield (b, c), xb[b, ..., c]
    return batch


def _out_array(x, n, w: Windows, dtype):
    batch = x.shape[: x.ndim - n - 1]
    return np.zeros((int(np.prod(batch, dtype=int)),) + w.out + (x.shape[-1],), dtype), batch


def ref_extreme(x, g, w: Windows, largest=True):
    """Torch CPU rule: start at the first real tap, replace if better or NaN.
    Returns (values, flat indices (-1 if no real tap), input gradient for cotangent g)."""
    n = len(w.spatial)
    vals, batch = _out_array(x, n, w, np.float64)
    idx = np.zeros(vals.shape, np.int64)
    grad = np.zeros(x.shape, np.float64).reshape((-1,) + x.shape[x.ndim - n - 1 :])
    gb = None if g is None else g.reshape(vals.shape)
    xf = x.astype(np.float64)
    for (b, c), plane in _planes(xf, n):
        for cell, taps in w.cells.items():
            real = [coord for _, coord in taps if coord is not None]
            best, best_coord = (-np.inf if largest else np.inf), None
            if real:
                best_coord = real[0]  # torch's initial index: the first real tap
                for coord in real:
                    v = plane[coord]
                    better = v > best if largest else v < best
                    if better or np.isnan(v):
                        best, best_coord = v, coord
            vals[(b,) + cell + (c,)] = best
            idx[(b,) + cell + (c,)] = -1 if best_coord is None else w.flat(best_coord)
            if gb is not None and best_coord is not None:
                grad[(b,) + best_coord + (c,)] += gb[(b,) + cell + (c,)]
    shape_out = batch + w.out + (x.shape[-1],)
    return vals.reshape(shape_out), idx.reshape(shape_out), grad.reshape(x.shape)


def ref_avg(x, g, w: Windows, *, count_include_pad=True, divisor_override=None, mode="avg",
            p=None):
    """mode 'avg' | 'sum' | 'lp' (torch lp formula, with pool_size from count_include_pad)."""
    n = len(w.spatial)
    out, batch = _out_array(x, n, w, np.float64)
    grad = np.zeros(x.shape, np.float64).reshape((-1,) + x.shape[x.ndim - n - 1 :])
    gb = None if g is None else g.reshape(out.shape).astype(np.float64)
    xf = x.astype(np.float64)
    for (b, c), plane in _planes(xf, n):
        for cell, taps in w.cells.items():
            real = [coord for _, coord in taps if coord is not None]
            if divisor_override is not None:
                div = divisor_override
            elif count_include_pad or mode == "lp":
                div = max(sum(1 for in_pad, _ in taps if in_pad), 1)
            else:
                div = max(len(real), 1)  # poolnets: a window missing the input averages to 0
            key = (b,) + cell + (c,)
            if mode == "sum":
                out[key] = sum(plane[q] for q in real)
                dvals = [1.0] * len(real)
            elif mode == "avg":
                out[key] = sum(plane[q] for q in real) / div
                dvals = [1.0 / div] * len(real)
            else:
                t = sum(plane[q] ** p for q in real) / div * len(taps)
                with np.errstate(invalid="ignore", divide="ignore"):
                    out[key] = t ** (1.0 / p) if t != 0 else 0.0 ** (1.0 / p)
                    scale = 0.0 if t == 0 else t ** (1.0 / p - 1.0) / p / div * len(taps)
                # d/d(x^p) per window; the chain through x^p is applied once at the end,
                # after accumulating over windows, as autograd does
                dvals = [scale] * len(real)
            if gb is not None:
                for q, dv in zip(real, dvals, strict=True):
                    grad[(b,) + q + (c,)] += gb[key] * dv
    if mode == "lp":
        with np.errstate(invalid="ignore", divide="ignore"):
            grad = grad * p * xf.reshape(grad.shape) ** (p - 1)
    return out.reshape(batch + w.out + (x.shape[-1],)), grad.reshape(x.shape)


def ref_unpool(values, indices, out_spatial, g=None):
    """Write values at flat indices (last write wins); gradient gathers g at indices."""
    n = len(out_spatial)
    batch = values.shape[: values.ndim - n - 1]
    vb = values.reshape((-1,) + values.shape[values.ndim - n - 1 :])
    ib = indices.reshape(vb.shape)
    size = int(np.prod(out_spatial))
    out = np.zeros((vb.shape[0], size, vb.shape[-1]), np.float64)
    grad = np.zeros(vb.shape, np.float64)
    gb = None if g is None else g.reshape(out.shape)
    for b in range(vb.shape[0]):
        for c in range(vb.shape[-1]):
            for pos in itertools.product(*(range(s) for s in vb.shape[1:-1])):
                i = ib[(b,) + pos + (c,)]
                if 0 <= i < size:
                    out[b, i, c] = vb[(b,) + pos + (c,)]
                    if gb is not None:
                        grad[(b,) + pos + (c,)] = gb[b, i, c]
    return (out.reshape(batch + tuple(out_spatial) + (vb.shape[-1],)),
            grad.reshape(values.shape))


def random_config(rng: np.random.Generator, *, half_window_padding: bool, dilation=True):
    """A random valid configuration: dict of pool kwargs plus `shape` (input shape).

    Shapes stay tiny (the tests run eagerly, one small XLA program per shape)."""
    while True:
        n = int(rng.choice([1, 1, 2, 2, 2, 3, 3, 4]))
        top = 3 if n < 4 else 2
        window = [int(v) for v in rng.integers(1, top + 1, n)]
        strides = [int(v) for v in rng.integers(1, top + 1, n)]
        dil = [1] * n
        if dilation and rng.random() < 0.4:
            dil = [int(v) for v in rng.integers(1, 3, n)]
        effs = [d * (k - 1) + 1 for k, d in zip(window, dil, strict=True)]
        bound = [e // 2 if half_window_padding else e for e in effs]
        form = rng.choice(["VALID", "SAME", "int", "ints", "pairs"])
        if form in ("VALID", "SAME"):
            padding = str(form)
        elif form == "int":
            padding = int(rng.integers(0, min(bound) + 1))
        elif form == "ints":
            padding = tuple(int(rng.integers(0, b + 1)) for b in bound)
        else:
            padding = tuple((int(rng.integers(0, b + 1)), int(rng.integers(0, b + 1)))
                            for b in bound)
        spatial = [int(v) for v in rng.integers(1, 7 - n + (n == 1), n)]
        pads = explicit_pads(padding, spatial, effs, strides)
        ceil_mode = bool(rng.random() < 0.5)
        if any(count_windows(length, e, s, lo, hi, ceil_mode) < 1 for e, length, s, (lo, hi)
               in zip(effs, spatial, strides, pads, strict=True)):
            continue
        batch = [int(v) for v in rng.integers(1, 3, int(rng.integers(0, 3)))]
        feats = int(rng.integers(1, 3))
        kwargs = {
            "window_shape": tuple(window),
            "strides": None if window == strides and rng.random() < 0.5 else tuple(strides),
            "padding": padding,
            "dilation": tuple(dil),
            "ceil_mode": ceil_mode,
        }
        if len(batch) == 1 and len(set(window)) == 1 and rng.random() < 0.5:
            kwargs["window_shape"] = window[0]  # int form: spatial dims = ndim - 2
        return kwargs, tuple(batch + spatial + [feats])


def windows_for(kwargs, shape) -> Windows:
    window = kwargs["window_shape"]
    n = len(shape) - 2 if isinstance(window, int) else len(window)
    window = (window,) * n if isinstance(window, int) else window
    strides = kwargs["strides"] or window
    return Windows(shape[len(shape) - 1 - n : -1], window, strides, kwargs["dilation"],
                   kwargs["padding"], kwargs["ceil_mode"])
