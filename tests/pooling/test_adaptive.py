"""adaptive_avg_pool / adaptive_max_pool against brute-force NumPy loops over output cells.

The reference computes every bin on its own with PyTorch's integer formulas
(start = floor(i*L/o), end = ceil((i+1)*L/o) written as (i*L)//o and ((i+1)*L+o-1)//o)
and, for max, replays PyTorch CPU's scan `if val > best or isnan(val)` in row-major order.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from poolnets.pooling import adaptive_avg_pool, adaptive_max_pool


def ref_bin(i: int, length: int, out: int) -> tuple[int, int]:
    return (i * length) // out, ((i + 1) * length + out - 1) // out


def ref_pool(x: np.ndarray, sizes: tuple[int | None, ...], kind: str):
    """Returns (values, flat spatial indices or None, vjp) with explicit loops over cells.

    vjp(g) is the input gradient of sum(g * pool(x)) (for max: g routed to the argmax)."""
    n = len(sizes)
    batch_shape, spatial, feats = (
        x.shape[: x.ndim - n - 1],
        x.shape[x.ndim - n - 1 : -1],
        x.shape[-1],
    )
    outs = tuple(length if o is None else o for o, length in zip(sizes, spatial, strict=True))
    xb = x.reshape((-1, *spatial, feats))
    b = xb.shape[0]
    values = np.zeros((b, *outs, feats), np.float64 if kind == "avg" else x.dtype)
    indices = np.zeros((b, *outs, feats), np.int64)
    regions = {}
    for cell in itertools.product(*(range(o) for o in outs)):
        bounds = [ref_bin(i, length, o) for i, length, o in zip(cell, spatial, outs, strict=True)]
        region = tuple(slice(s, e) for s, e in bounds)
        regions[cell] = region
        if kind == "avg":
            block = xb[(slice(None), *region, slice(None))].astype(np.float64)
            values[(slice(None), *cell, slice(None))] = block.mean(axis=tuple(range(1, n + 1)))
            continue
        first = tuple(s for s, _ in bounds)
        best = xb[(slice(None), *first, slice(None))].copy()
        best_idx = np.full((b, feats), np.ravel_multi_index(first, spatial))
        for pos in itertools.product(*(range(s, e) for s, e in bounds)):
            val = xb[(slice(None), *pos, slice(None))]
            take = val > best
            if np.issubdtype(x.dtype, np.floating):
                take |= np.isnan(val)
            best = np.where(take, val, best)
            best_idx = np.where(take, np.ravel_multi_index(pos, spatial), best_idx)
        values[(slice(None), *cell, slice(None))] = best
        indices[(slice(None), *cell, slice(None))] = best_idx

    def vjp(g: np.ndarray) -> np.ndarray:
        gb = g.reshape((b, *outs, feats)).astype(np.float64)
        grad = np.zeros(xb.shape, np.float64)
        if kind == "avg":
            for cell, region in regions.items():
                count = math.prod(r.stop - r.start for r in region)
                grad[(slice(None), *region, slice(None))] += (
                    gb[(slice(None), *cell, slice(None))][(slice(None),) + (None,) * n] / count
                )
        else:
            flat_grad = grad.reshape(b, -1, feats)
            flat_idx = indices.reshape(b, -1, feats)
            flat_g = gb.reshape(b, -1, feats)
            for bi, q, c in itertools.product(range(b), range(flat_idx.shape[1]), range(feats)):
                flat_grad[bi, flat_idx[bi, q, c], c] += flat_g[bi, q, c]
        return grad.reshape(x.shape)

    out_shape = (*batch_shape, *outs, feats)
    idx = None if kind == "avg" else indices.reshape(out_shape)
    return values.reshape(out_shape), idx, vjp


def random_config(rng: np.random.Generator):
    n = int(rng.choice([1, 2, 3], p=[0.3, 0.45, 0.25]))
    spatial = tuple(int(v) for v in rng.integers(1, 8, n))
    sizes = []
    for length in spatial:
        r = rng.random()
        if r < 0.15:
            sizes.append(None)
        elif r < 0.3:
            sizes.append(length)
        else:
            sizes.append(int(rng.integers(1, 10)))  # smaller, equal or larger than the input
    batch = tuple(int(v) for v in rng.integers(1, 3, int(rng.integers(0, 3))))
    shape = (*batch, *spatial, int(rng.integers(1, 4)))
    if rng.random() < 0.4:  # few distinct values: many ties
        x = rng.integers(-2, 3, shape).astype(np.float32)
    else:
        x = rng.standard_normal(shape).astype(np.float32)
    return x, tuple(sizes)


def _configs(seed: int, count: int):
    rng = np.random.default_rng(seed)
    return [random_config(rng) for _ in range(count)]


CHUNKS = range(5)
PER_CHUNK = 40  # 200 random configurations per op; every 4th also checks the gradient
# One compile per configuration, forward alone or forward + VJP: cheaper than op-by-op.
# LLVM optimisation level 0 cuts compile time by about a third and does not change what
# the program computes; test_jit_vmap_match_eager and the torch fixtures use the defaults.
quick_jit = functools.partial(
    jax.jit, static_argnums=1, compiler_options={"xla_backend_optimization_level": 0}
)
avg_fwd = quick_jit(adaptive_avg_pool)
max_fwd = quick_jit(functools.partial(adaptive_max_pool, return_indices=True))


@functools.partial(quick_jit, static_argnums=2)
def avg_fwd_vjp(x, g, sizes):
    y, pullback = jax.vjp(lambda a: adaptive_avg_pool(a, sizes), x)
    return y, pullback(g)[0]


@functools.partial(quick_jit, static_argnums=2)
def max_fwd_vjp(x, g, sizes):
    y, pullback, idx = jax.vjp(
        lambda a: adaptive_max_pool(a, sizes, return_indices=True), x, has_aux=True
    )
    return y, idx, pullback(g)[0]


@pytest.mark.parametrize("chunk", CHUNKS)
def test_avg_forward_and_grad_match_reference(chunk):
    rng = np.random.default_rng(1000 + chunk)
    for n, (x, sizes) in enumerate(_configs(chunk, PER_CHUNK)):
        want, _, vjp = ref_pool(x, sizes, "avg")
        msg = f"{x.shape} {sizes}"
        if n % 4:
            got = avg_fwd(x, sizes)
        else:
            g = rng.standard_normal(want.shape).astype(np.float32)
            got, grad = avg_fwd_vjp(x, g, sizes)
            np.testing.assert_allclose(grad, vjp(g), rtol=1e-5, atol=1e-6, err_msg=msg)
        assert got.shape == want.shape and got.dtype == jnp.float32, msg
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=msg)


@pytest.mark.parametrize("chunk", CHUNKS)
def test_max_forward_indices_and_grad_match_reference(chunk):
    rng = np.random.default_rng(2000 + chunk)
    for n, (x, sizes) in enumerate(_configs(100 + chunk, PER_CHUNK)):
        flavour = rng.random()
        if flavour < 0.25:  # NaNs and infinities: NaN wins, the last NaN among NaNs
            x = x.copy()
            x.flat[rng.integers(0, x.size, 3)] = rng.choice([np.nan, np.inf, -np.inf], 3)
        elif flavour < 0.4:  # several NaNs per bin
            x = np.where(rng.random(x.shape) < 0.4, np.float32(np.nan), x)
        want, want_idx, vjp = ref_pool(x, sizes, "max")
        msg = f"{x.shape} {sizes}"
        if n % 4:
            got, idx = max_fwd(x, sizes)
        else:
            g = rng.standard_normal(want.shape).astype(np.float32)
            got, idx, grad = max_fwd_vjp(x, g, sizes)
            np.testing.assert_allclose(grad, vjp(g), rtol=1e-6, atol=1e-6, err_msg=msg)
        assert idx.dtype == jnp.int32, msg
        np.testing.assert_array_equal(idx, want_idx, err_msg=msg)
        np.testing.assert_array_equal(got, want, err_msg=msg)


@pytest.mark.parametrize("dtype", [np.int32, np.int8, np.uint8, np.bool_])
def test_max_integer_and_bool_inputs(dtype):
    for x, sizes in _configs(7, 6):
        if dtype is np.bool_:
            xi = x > 0
        elif dtype is np.uint8:
            xi = np.abs(x * 3).astype(dtype)
        else:
            xi = (x * 3).astype(dtype)
        want, want_idx, _ = ref_pool(xi, sizes, "max")
        got, idx = max_fwd(xi, sizes)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(idx, want_idx)


def test_max_identity_is_dtype_min():
    # A bin full of dtype-min values (the identity) must still report its first cell.
    x = np.full((1, 5, 1), np.iinfo(np.int32).min, np.int32)
    got, idx = max_fwd(x, (3,))
    np.testing.assert_array_equal(got[0, :, 0], [np.iinfo(np.int32).min] * 3)
    np.testing.assert_array_equal(idx[0, :, 0], [0, 1, 3])
    x = np.full((5, 1), -np.inf, np.float32)
    _, idx = max_fwd(x, (3,))
    np.testing.assert_array_equal(idx[:, 0], [0, 1, 3])


def test_hand_computed_1d():
    # L=5, o=3: bins [0,2), [1,4), [3,5) -- the middle bin overlaps both neighbours.
    x = np.array([1.0, 4.0, 2.0, 4.0, 0.0], np.float32).reshape(5, 1)
    np.testing.assert_allclose(avg_fwd(x, (3,))[:, 0], [2.5, 10 / 3, 2.0], rtol=1e-6)
    v, i = max_fwd(x, (3,))
    np.testing.assert_array_equal(v[:, 0], [4.0, 4.0, 4.0])
    np.testing.assert_array_equal(i[:, 0], [1, 1, 3])  # tie in [1,4): the first 4 wins
    # o > L repeats cells: L=2, o=3 -> bins [0,1), [0,2), [1,2).
    np.testing.assert_allclose(avg_fwd(x[:2], (3,))[:, 0], [1.0, 2.5, 4.0])


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_avg_low_precision_accumulates_in_float32(dtype):
    # 9001 -> 3 uneven bins of ~3000 ones: a bf16/f16 running sum would stall at 256/2048.
    x = jnp.ones((2, 9001, 1), dtype)
    got = avg_fwd(x, (3,))
    assert got.dtype == dtype
    np.testing.assert_array_equal(np.asarray(got, np.float32), 1.0)
    x = jnp.ones((1, 8192, 1), dtype)  # divisible bins (reshape path), 4096 each
    np.testing.assert_array_equal(np.asarray(avg_fwd(x, (2,)), np.float32), 1.0)


def test_low_precision_random_against_reference():
    for x, sizes in _configs(11, 8):
        xb = jnp.asarray(x, jnp.bfloat16)
        want, _, _ = ref_pool(np.asarray(xb, np.float32), sizes, "avg")
        got = avg_fwd(xb, sizes)
        np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=1e-2, atol=1e-2)
        wmax, widx, _ = ref_pool(np.asarray(xb, np.float32), sizes, "max")
        gmax, gidx = max_fwd(xb, sizes)
        np.testing.assert_array_equal(np.asarray(gmax, np.float32), wmax)
        np.testing.assert_array_equal(gidx, widx)


def test_int_output_size_means_every_dim_between_first_and_last():
    x = np.random.default_rng(0).standard_normal((2, 5, 6, 7, 3)).astype(np.float32)
    np.testing.assert_allclose(avg_fwd(x, 2), ref_pool(x, (2, 2, 2), "avg")[0], rtol=1e-5)
    np.testing.assert_array_equal(max_fwd(x, 3)[1], ref_pool(x, (3, 3, 3), "max")[1])
    assert jax.eval_shape(lambda a: adaptive_avg_pool(a, 4), x).shape == (2, 4, 4, 4, 3)


def test_four_spatial_dims():
    x = np.random.default_rng(1).standard_normal((1, 3, 4, 2, 5, 2)).astype(np.float32)
    for sizes in [(2, 3, None, 2), (1, 5, 3, 4)]:
        want, want_idx, _ = ref_pool(x, sizes, "max")
        got, idx = max_fwd(x, sizes)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(idx, want_idx)
        np.testing.assert_allclose(avg_fwd(x, sizes), ref_pool(x, sizes, "avg")[0], rtol=1e-5)


JIT_CASES = [((2, 7, 5, 3), (3, 4)), ((6, 2), (4,)), ((2, 2, 3, 5, 4, 1), (2, None, 3))]


@pytest.mark.parametrize("shape,sizes", JIT_CASES)
def test_jit_default_options_and_vmap_match_reference(shape, sizes):
    x = np.random.default_rng(3).integers(-2, 3, shape).astype(np.float32)
    stacked = np.stack([x, -x])
    ref_avg = [ref_pool(a, sizes, "avg")[0] for a in stacked]
    ref_max = [ref_pool(a, sizes, "max")[:2] for a in stacked]
    got_avg = jax.jit(adaptive_avg_pool, static_argnums=1)(x, sizes)
    got_max = jax.jit(functools.partial(adaptive_max_pool, return_indices=True), static_argnums=1)(
        x, sizes
    )
    np.testing.assert_allclose(got_avg, ref_avg[0], rtol=1e-6)
    np.testing.assert_array_equal(got_max[0], ref_max[0][0])
    np.testing.assert_array_equal(got_max[1], ref_max[0][1])
    mapped_avg, (mapped_max, mapped_idx) = quick_jit(
        lambda a, s: jax.vmap(
            lambda b: (adaptive_avg_pool(b, s), adaptive_max_pool(b, s, return_indices=True))
        )(a)
    )(stacked, sizes)
    np.testing.assert_allclose(mapped_avg, np.stack(ref_avg), rtol=1e-6)
    np.testing.assert_array_equal(mapped_max, np.stack([v for v, _ in ref_max]))
    np.testing.assert_array_equal(mapped_idx, np.stack([i for _, i in ref_max]))


@pytest.mark.parametrize("kind", ["avg", "max"])
def test_second_order(kind):
    # f(x) = 0.5 * |pool(x)|^2. pool is linear (avg) or a fixed selection near x (max, no
    # ties), so the Hessian-vector product is P^T P v, computed with the reference.
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 5, 7, 2)).astype(np.float32)
    v = rng.standard_normal(x.shape).astype(np.float32)
    sizes = (3, 4)
    pool = adaptive_avg_pool if kind == "avg" else adaptive_max_pool
    f = jax.jit(lambda a: 0.5 * jnp.sum(pool(a, sizes) ** 2))
    _, hvp = jax.jvp(jax.grad(f), (jnp.asarray(x),), (jnp.asarray(v),))
    _, idx, vjp = ref_pool(x, sizes, kind)
    if kind == "avg":
        pv = ref_pool(v, sizes, "avg")[0]
    else:
        flat_v = v.reshape(2, -1, 2)
        pv = np.take_along_axis(flat_v, idx.reshape(2, -1, 2), axis=1).reshape(idx.shape)
    np.testing.assert_allclose(hvp, vjp(pv), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["avg", "max"])
def test_program_size_does_not_grow_with_output_size(kind):
    # No Python loop per output cell: the traced program (forward and gradient) has the same
    # number of equations for a 3x3 and a 47x47 output (both uneven bins of 100).
    pool = adaptive_avg_pool if kind == "avg" else adaptive_max_pool

    def fwd_and_grad(a, sizes):
        return jax.grad(lambda b: jnp.sum(pool(b, sizes)))(a)

    for fn in (pool, fwd_and_grad):
        small = len(
            jax.make_jaxpr(lambda a, f=fn: f(a, (3, 3)))(jnp.zeros((1, 100, 100, 2))).jaxpr.eqns
        )
        large = len(
            jax.make_jaxpr(lambda a, f=fn: f(a, (47, 47)))(jnp.zeros((1, 100, 100, 2))).jaxpr.eqns
        )
        assert small == large


TORCH_FIXTURES = Path(__file__).parent / "fixtures" / "adaptive_torch.npz"


def _torch_cases():
    with np.load(TORCH_FIXTURES) as data:
        arrays = {key: data[key] for key in data.files}
    meta = json.loads(str(arrays.pop("meta")))
    for i, case in enumerate(meta):
        fields = {k.split("/")[1]: v for k, v in arrays.items() if k.split("/")[0] == str(i)}
        yield case, fields


def test_matches_torch_fixtures():
    # Written by tools/make_torch_fixtures_adaptive.py (torch 2.13.0 CPU): torch's own
    # AdaptiveAvgPool/AdaptiveMaxPool 1d/2d/3d forward, return_indices and input gradients.
    cases = list(_torch_cases())
    assert len(cases) == 60
    for case, f in cases:
        sizes = tuple(case["output_size"])
        dtype = jnp.bfloat16 if case["dtype"] == "bfloat16" else jnp.float32
        tol = (
            {"rtol": 1e-2, "atol": 1e-2} if dtype == jnp.bfloat16 else {"rtol": 1e-6, "atol": 1e-6}
        )
        x, g = jnp.asarray(f["x"], dtype), jnp.asarray(f["g"], dtype)
        msg = f"{case} x.shape={f['x'].shape}"
        if case["op"] == "avg":
            y, dx = avg_fwd_vjp(x, g, sizes)
            np.testing.assert_allclose(np.asarray(y, np.float32), f["y"], err_msg=msg, **tol)
        else:
            y, idx, dx = max_fwd_vjp(x, g, sizes)
            np.testing.assert_array_equal(np.asarray(y, np.float32), f["y"], err_msg=msg)
            np.testing.assert_array_equal(idx, f["idx"], err_msg=msg)
        if dtype == jnp.bfloat16:
            # torch adds the bf16 gradient contributions in bf16, we add them in float32:
            # torch's own rounding (seen up to ~0.013 on |dx| ~ 0.25) sets this tolerance.
            tol = {"rtol": 5e-2, "atol": 5e-2}
        np.testing.assert_allclose(np.asarray(dx, np.float32), f["dx"], err_msg=msg, **tol)


Z2 = np.zeros((2, 4, 4, 3), np.float32)


@pytest.mark.parametrize("fn", [adaptive_avg_pool, adaptive_max_pool])
@pytest.mark.parametrize(
    "x,output_size,exc,words",
    [
        (Z2, (0, 2), ValueError, ["output_size", "(0, 2)"]),
        (Z2, -1, ValueError, ["output_size", "-1"]),
        (Z2, (), ValueError, ["output_size", "()"]),
        (Z2, (2, 2.5), TypeError, ["output_size", "2.5"]),
        (Z2, "2", TypeError, ["output_size", "'2'"]),
        (Z2, None, TypeError, ["output_size", "None"]),
        (
            np.zeros((4, 3), np.float32),
            (2, 2),
            ValueError,
            ["output_size=(2, 2)", "x.shape=(4, 3)"],
        ),
        (np.zeros((4, 3), np.float32), 2, ValueError, ["output_size=2", "x.shape=(4, 3)"]),
        (np.zeros((2, 0, 3), np.float32), (2,), ValueError, ["x.shape=(2, 0, 3)"]),
    ],
)
def test_bad_output_size_and_shape_name_argument_and_value(fn, x, output_size, exc, words):
    with pytest.raises(exc) as info:
        fn(x, output_size)
    for word in words:
        assert word in str(info.value)
    with pytest.raises(exc):  # raised while tracing starts, never an XLA error
        jax.jit(lambda a: fn(a, output_size))(x)


def test_bad_dtypes_name_the_dtype():
    with pytest.raises(TypeError, match=r"adaptive_avg_pool: x.*x.dtype=int32"):
        adaptive_avg_pool(np.zeros((1, 4, 2), np.int32), (2,))
    with pytest.raises(TypeError, match=r"x.dtype=bool"):
        adaptive_avg_pool(np.zeros((1, 4, 2), bool), (2,))
    with pytest.raises(TypeError, match=r"x.dtype=complex64"):
        adaptive_max_pool(np.zeros((1, 4, 2), np.complex64), (2,))
