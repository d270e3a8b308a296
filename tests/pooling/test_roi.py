"""roi_align / roi_pool against hand-computed cases, a brute-force NumPy port of the
documented torchvision algorithm, and torchvision fixtures (this file never imports torch)."""

from __future__ import annotations

import itertools
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from poolnets.pooling.roi import roi_align, roi_pool

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
F32 = np.float32
# Jitted entry points: one compile per configuration instead of one per primitive. Boxes
# passed to these are traced, so adaptive grids use the jit bound (module docstring).
ALIGN = jax.jit(roi_align, static_argnames=(
    "output_size", "spatial_scale", "sampling_ratio", "aligned", "max_sampling_ratio"))
POOL = jax.jit(roi_pool, static_argnames=("output_size", "spatial_scale"))


def bilinear(img: np.ndarray, y: float, x: float) -> np.ndarray:
    """torchvision's bilinear_interpolate on `img (H, W, C)`."""
    h, w = img.shape[:2]
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return np.zeros(img.shape[-1])
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= h - 1:
        y0 = y1 = h - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= w - 1:
        x0 = x1 = w - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    hy, hx = 1 - ly, 1 - lx
    return (hy * hx * img[y0, x0] + hy * lx * img[y0, x1]
            + ly * hx * img[y1, x0] + ly * lx * img[y1, x1])


def roi_align_reference(feats, boxes, size, scale, ratio, aligned, max_grid=None):
    """Loops over ROIs, bins and samples (float32 coordinates as the C++ kernel)."""
    ph, pw = size
    out = np.zeros((len(boxes), ph, pw, feats.shape[-1]))
    off = F32(0.5 if aligned else 0.0)
    for k, box in enumerate(boxes.astype(F32)):
        img = feats[int(box[0])].astype(np.float64)
        x1, y1, x2, y2 = (box[1:] * F32(scale) - off).astype(F32)
        rw, rh = x2 - x1, y2 - y1
        if not aligned:
            rw, rh = max(rw, F32(1)), max(rh, F32(1))
        bh, bw = F32(rh / F32(ph)), F32(rw / F32(pw))
        gh = ratio if ratio > 0 else math.ceil(F32(rh / F32(ph)))
        gw = ratio if ratio > 0 else math.ceil(F32(rw / F32(pw)))
        if max_grid is not None:
            gh, gw = min(gh, max_grid[0]), min(gw, max_grid[1])
        count = max(gh * gw, 1)
        for i, j in itertools.product(range(ph), range(pw)):
            acc = np.zeros(feats.shape[-1])
            for iy, ix in itertools.product(range(gh), range(gw)):
                y = F32(y1 + F32(i) * bh + F32(F32(iy + 0.5) * bh) / F32(gh))
                x = F32(x1 + F32(j) * bw + F32(F32(ix + 0.5) * bw) / F32(gw))
                acc += bilinear(img, float(y), float(x))
            out[k, i, j] = acc / count
    return out


def c_round(v: float) -> int:
    return int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1)


def roi_pool_reference(feats, boxes, size, scale):
    ph, pw = size
    h, w = feats.shape[1:3]
    out = np.zeros((len(boxes), ph, pw, feats.shape[-1]))
    for k, box in enumerate(boxes.astype(F32)):
        x1, y1, x2, y2 = (c_round(float(v * F32(scale))) for v in box[1:])
        rw, rh = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
        bh, bw = F32(rh) / F32(ph), F32(rw) / F32(pw)
        for i, j in itertools.product(range(ph), range(pw)):
            hs = min(max(math.floor(F32(i) * bh) + y1, 0), h)
            he = min(max(math.ceil(F32(i + 1) * bh) + y1, 0), h)
            ws = min(max(math.floor(F32(j) * bw) + x1, 0), w)
            we = min(max(math.ceil(F32(j + 1) * bw) + x1, 0), w)
            if he > hs and we > ws:
                out[k, i, j] = feats[int(box[0]), hs:he, ws:we].max(axis=(0, 1))
    return out


def random_boxes(rng, k, n, extent, inverted=True):
    corners = rng.uniform(-0.3 * extent, 1.3 * extent, size=(k, 4))
    if not inverted:
        corners = np.concatenate([np.minimum(corners[:, :2], corners[:, 2:]),
                                  np.maximum(corners[:, :2], corners[:, 2:])], axis=1)
    return np.concatenate([rng.integers(0, n, size=(k, 1)), corners], axis=1).astype(F32)


def linear_image():
    """f[h, w] = 10 h + w: bilinear interpolation of it is exact, 10 y + x."""
    h, w = np.meshgrid(np.arange(4.0), np.arange(4.0), indexing="ij")
    return jnp.asarray((10 * h + w)[None, :, :, None], jnp.float32)


def test_roi_align_hand_computed():
    box = jnp.asarray([[0.0, 0.5, 0.5, 2.5, 2.5]])
    # not aligned: 2x2 box, bins of 1, bin centres y, x in {1, 2} -> 10 y + x
    got = ALIGN(linear_image(), box, 2, sampling_ratio=2)
    np.testing.assert_allclose(np.asarray(got)[0, ..., 0], [[11.0, 12.0], [21.0, 22.0]], atol=1e-5)
    # aligned: box shifted by -0.5, centres in {0.5, 1.5}
    got = ALIGN(linear_image(), box, 2, aligned=True)
    np.testing.assert_allclose(np.asarray(got)[0, ..., 0], [[5.5, 6.5], [15.5, 16.5]], atol=1e-5)
    # outside rule and clamping: x samples -1.5 (< -1: zero) and -0.5 (clamped to 0);
    # y samples 0.25, 0.75 on column 0 (= 10 y): (0 + 0 + 2.5 + 7.5) / 4
    got = ALIGN(linear_image(), jnp.asarray([[0.0, -2.0, 0.0, 0.0, 1.0]]), 1,
                sampling_ratio=2)
    np.testing.assert_allclose(np.asarray(got)[0, 0, 0, 0], 2.5, atol=1e-6)
    # y in (H - 1, H]: clamped to the last row; one sample at y = 3.5, x = 1
    got = ALIGN(linear_image(), jnp.asarray([[0.0, 0.5, 3.0, 1.5, 4.0]]), 1,
                sampling_ratio=1)
    np.testing.assert_allclose(np.asarray(got)[0, 0, 0, 0], 31.0, atol=1e-6)


def test_roi_pool_hand_computed():
    feats = jnp.arange(16.0).reshape(1, 4, 4, 1)
    got = POOL(feats, jnp.asarray([[0.0, 0.0, 0.0, 3.0, 3.0]]), 2)
    np.testing.assert_allclose(np.asarray(got)[0, ..., 0], [[5.0, 7.0], [13.0, 15.0]])
    # C rounding: 0.5 -> 1 and 2.5 -> 3 (round-half-even would give 0 and 2 and see the 5)
    row = jnp.asarray([5.0, 0.0, 1.0, 2.0]).reshape(1, 1, 4, 1)
    got = POOL(row, jnp.asarray([[0.0, 0.5, 0.0, 2.5, 0.0]]), 1)
    assert float(got[0, 0, 0, 0]) == 2.0
    # a box entirely right of the image: every bin is clipped empty -> 0
    got = POOL(feats + 1, jnp.asarray([[0.0, 10.0, 0.0, 12.0, 3.0]]), 2)
    np.testing.assert_array_equal(np.asarray(got), 0.0)


def test_roi_align_matches_numpy_port_random():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(2, 5, 6, 2)).astype(F32)
    for (size, scale, ratio, aligned), trial in zip(
        [((2, 3), 1.0, -1, False), ((2, 2), 0.5, 0, True), ((3, 1), 1.0, 2, True),
         ((1, 2), 0.25, 1, False), ((3, 3), 1.0, -1, True)], range(5), strict=True):
        boxes = random_boxes(rng, 10, 2, 8.0 / scale, inverted=not aligned or ratio > 0)
        got = jax.jit(lambda f, b=boxes, size=size, scale=scale, ratio=ratio, aligned=aligned:
                      roi_align(f, b, size, spatial_scale=scale, sampling_ratio=ratio,
                                aligned=aligned))(feats)
        want = roi_align_reference(feats, boxes, size, scale, ratio, aligned)
        np.testing.assert_allclose(np.asarray(got), want, atol=2e-5, err_msg=str(trial))


def test_roi_pool_matches_numpy_port_random():
    rng = np.random.default_rng(1)
    for shape, size, scale in [((2, 5, 7, 3), (2, 3), 1.0), ((2, 5, 7, 3), (3, 3), 0.5),
                               ((2, 5, 7, 3), (1, 4), 0.25), ((3, 13, 11, 2), (2, 3), 1.0)]:
        feats = rng.normal(size=shape).astype(F32)
        boxes = random_boxes(rng, 16, shape[0], max(shape[1:3]) / scale)
        boxes[-3:, 1:] = np.round(boxes[-3:, 1:] * 2 * scale) / (2 * scale)  # exact halves
        got = jax.jit(lambda f, b=boxes, size=size, scale=scale:
                      roi_pool(f, b, size, spatial_scale=scale))(feats)
        want = roi_pool_reference(feats, boxes, size, scale)
        np.testing.assert_array_equal(np.asarray(got), want)


def value_and_vjp(fn, x, cotangent):
    """`fn(x)` and the cotangent pulled back to `x`, in one compiled program."""
    def both(x, c):
        out, pull = jax.vjp(fn, x)
        return out, pull(c)[0]
    return jax.jit(both)(x, cotangent)


def test_matches_torchvision_fixtures_values_and_gradients():
    data = np.load(FIXTURES / "torchvision_roi.npz")
    feats = jnp.asarray(data["features"])
    for i, (ph, pw, scale, ratio, aligned) in enumerate(data["align_configs"]):
        def fn(f, i=i, ph=ph, pw=pw, scale=scale, ratio=ratio, aligned=aligned):
            return roi_align(f, data[f"align{i}_boxes"], (int(ph), int(pw)),
                             spatial_scale=float(scale), sampling_ratio=int(ratio),
                             aligned=bool(aligned))
        out, grad = value_and_vjp(fn, feats, data[f"align{i}_cot"])
        np.testing.assert_allclose(np.asarray(out), data[f"align{i}"], atol=2e-6)
        np.testing.assert_allclose(np.asarray(grad), data[f"align{i}_grad"], atol=2e-6)
    for i, (ph, pw, scale) in enumerate(data["pool_configs"]):
        def fn(f, i=i, ph=ph, pw=pw, scale=scale):
            return roi_pool(f, data[f"pool{i}_boxes"], (int(ph), int(pw)),
                            spatial_scale=float(scale))
        out, grad = value_and_vjp(fn, feats, data[f"pool{i}_cot"])
        np.testing.assert_array_equal(np.asarray(out), data[f"pool{i}"])
        np.testing.assert_allclose(np.asarray(grad), data[f"pool{i}_grad"], atol=2e-6)


def test_jit_static_grid_bound_and_vmap():
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(2, 6, 7, 2)).astype(F32)
    x1, y1 = rng.uniform(0, 3, 8), rng.uniform(0, 3, 8)
    inside = np.stack([rng.integers(0, 2, 8), x1, y1, rng.uniform(x1, 7), rng.uniform(y1, 6)],
                      axis=1).astype(F32)  # within the 6 x 7 map
    jitted = jax.jit(lambda f, b: roi_align(f, b, 2))
    want = roi_align_reference(feats, inside, (2, 2), 1.0, -1, False)
    np.testing.assert_allclose(np.asarray(jitted(feats, inside)), want, atol=2e-5)
    # a box larger than the map: under jit the grid is clamped to ceil(H / ph) = 3 rows
    # and ceil(W / pw) = 4 columns per bin ...
    big = np.asarray([[0.0, -10.0, -12.0, 20.0, 16.0]], F32)
    np.testing.assert_allclose(
        np.asarray(jitted(feats, big)),
        roi_align_reference(feats, big, (2, 2), 1.0, -1, False, max_grid=(3, 4)), atol=2e-5)
    # ... with max_sampling_ratio, or with boxes known while tracing (eager calls, or
    # closed over as here), it is exact
    exact = roi_align_reference(feats, big, (2, 2), 1.0, -1, False)
    bounded = jax.jit(lambda f, b: roi_align(f, b, 2, max_sampling_ratio=16))
    np.testing.assert_allclose(np.asarray(bounded(feats, big)), exact, atol=2e-5)
    closed_over = jax.jit(lambda f: roi_align(f, big, 2))  # constant boxes: exact bound
    np.testing.assert_allclose(np.asarray(closed_over(feats)), exact, atol=2e-5)
    # vmap over independent (features, boxes) sets
    stack_f = np.stack([feats, feats[::-1]])
    stack_b = np.stack([inside, inside[::-1]])
    for op in (lambda f, b: roi_align(f, b, (2, 3), sampling_ratio=2),
               lambda f, b: roi_pool(f, b, (2, 3))):
        batched = jax.jit(jax.vmap(op))(stack_f, stack_b)
        for s in range(2):
            want = jax.jit(op)(stack_f[s], stack_b[s])
            np.testing.assert_allclose(np.asarray(batched[s]), np.asarray(want), atol=1e-6)


def test_adjoint_gradient_and_dtypes():
    rng = np.random.default_rng(3)
    feats = jnp.asarray(rng.normal(size=(2, 5, 6, 3)), jnp.float32)
    boxes = random_boxes(rng, 6, 2, 6.0)
    fn = jax.jit(lambda f: roi_align(f, boxes, (2, 2), aligned=True, max_sampling_ratio=4))
    y = fn(feats)
    c = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
    grad = jax.grad(lambda f: jnp.sum(fn(f) * c))(feats)
    assert float(jnp.sum(y * c)) == pytest.approx(float(jnp.sum(feats * grad)), rel=1e-4)
    g = jax.jit(jax.grad(lambda f: jnp.sum(roi_pool(f, boxes, 2))))(feats)
    assert set(np.unique(np.asarray(g))) <= set(range(0, 40))  # integer counts of max hits
    for dtype in (jnp.bfloat16, jnp.float16):
        spec = jax.ShapeDtypeStruct(feats.shape, dtype)
        assert jax.eval_shape(lambda f: roi_align(f, boxes, 2), spec).dtype == dtype
        assert jax.eval_shape(lambda f: roi_pool(f, boxes, 2), spec).dtype == dtype


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda f, b: roi_align(f, b[:, :4], 2), ValueError, r"boxes.*\(6, 4\)"),
        (lambda f, b: roi_pool(f[0], b, 2), ValueError, r"features.*\(5, 6, 3\)"),
        (lambda f, b: roi_align(f, b, 0), ValueError, "output_size=0"),
        (lambda f, b: roi_pool(f, b, (2, 0)), ValueError, r"output_size=\(2, 0\)"),
        (lambda f, b: roi_align(f, b, (2, 2, 2)), TypeError, "output_size"),
        (lambda f, b: roi_align(f, b, 2, spatial_scale=0.0), ValueError, "spatial_scale"),
        (lambda f, b: roi_pool(f, b, 2, spatial_scale="1"), TypeError, "spatial_scale"),
        (lambda f, b: roi_align(f, b, 2, sampling_ratio=1.5), TypeError, "sampling_ratio=1.5"),
        (lambda f, b: roi_align(f, b, 2, aligned="yes"), TypeError, "aligned='yes'"),
        (lambda f, b: roi_align(f, b, 2, max_sampling_ratio=0), ValueError, "max_sampling_ratio"),
        (lambda f, b: roi_align(f.astype(jnp.int32), b, 2), TypeError, "int32"),
    ],
)
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call(jnp.zeros((2, 5, 6, 3)), jnp.zeros((6, 5)))


def test_second_order():
    """Both ops are piecewise linear in the features: Hessian of |f|^2 / 2 is J^T J."""
    feats = jnp.asarray(np.random.default_rng(4).normal(size=(1, 4, 5, 1)), jnp.float32)
    boxes = jnp.asarray([[0.0, 0.3, 0.2, 3.7, 2.9], [0.0, -1.0, 1.0, 2.0, 5.0]])
    for fn in (lambda f: roi_align(f, boxes, 2, sampling_ratio=2), lambda f: roi_pool(f, boxes, 2)):
        hess = jax.jit(jax.hessian(lambda f, op=fn: 0.5 * jnp.sum(op(f) ** 2)))(feats)
        jac = jax.jit(jax.jacobian(fn))(feats).reshape(-1, feats.size)
        np.testing.assert_allclose(np.asarray(hess).reshape(feats.size, feats.size),
                                   np.asarray(jac.T @ jac), atol=1e-5)


@pytest.mark.parametrize("op", [roi_align, roi_pool])
def test_non_finite_concrete_boxes_raise_naming_the_rows(op):
    boxes = np.array([[0, 0, 0, 2, 2], [0, np.nan, 0, 2, 2], [0, 1, 1, 3, 3],
                      [0, 0, 0, np.inf, 2]], F32)
    feats = np.zeros((1, 4, 4, 1), F32)
    with pytest.raises(ValueError, match=r"boxes must be finite; rows \[1, 3\]"):
        op(feats, boxes, 2)
    with pytest.raises(ValueError, match=r"rows \[1, 3\]"):  # closed over: still concrete
        jax.jit(lambda f: op(f, boxes, 2))(feats)


def test_non_finite_traced_boxes_give_nan_rois_and_leave_the_others():
    feats = jnp.asarray(np.random.default_rng(5).normal(size=(1, 3, 3, 1)), jnp.float32)
    good = np.array([[0, 0.5, 0.5, 2.0, 1.5], [0, 1.0, 0.0, 2.0, 2.0]], F32)
    boxes = np.concatenate([good[:1], [[0, np.nan, 0, 2, 2], [-np.inf, 0, 0, 2, 2]], good[1:]])

    def align(f, b):
        return roi_align(f, b, 1, sampling_ratio=2)

    def both(f, b):
        return align(f, b) + roi_pool(f, b, 1)

    @jax.jit  # one compile for everything
    def run(f, b, ok):
        # The gradient of the finite RoIs' outputs: a NaN row must not poison it (RoIAlign
        # contracts every row's sample weights with the whole feature map; RoIPool's
        # gradient compiles slowly, and its rows only gather).
        grad = jax.grad(lambda t: jnp.sum(jnp.where(jnp.isnan(y := align(t, b)), 0, y)))(f)
        return both(f, b), both(f, ok), grad

    got, want, grad = run(feats, boxes, good)
    assert np.isnan(np.asarray(got[1:3])).all()
    np.testing.assert_array_equal(got[np.array([0, 3])], want)
    assert np.isfinite(np.asarray(grad)).all() and np.any(np.asarray(grad) != 0)
