"""Research windowed pools against brute-force NumPy window loops, plus defining properties.

Every random configuration is jitted once with all pools together (eager dispatch of the
tap gathers costs more than one compile).
"""

import itertools
import math
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from poolnets.pooling import (
    gated_pool,
    gem_pool,
    global_gem_pool,
    global_lse_pool,
    global_soft_pool,
    lip_pool,
    lse_pool,
    median_pool,
    mixed_pool,
    soft_pool,
    stochastic_pool,
    tree_pool,
)


def _pairs(padding, spatial, window, strides):
    """Independent restatement of the padding forms (SAME: XLA's rule)."""
    if padding == "VALID":
        return [(0, 0)] * len(spatial)
    if padding == "SAME":
        pairs = []
        for n, k, s in zip(spatial, window, strides, strict=True):
            total = max((-(-n // s) - 1) * s + k - n, 0)
            pairs.append((total // 2, total - total // 2))
        return pairs
    if isinstance(padding, int):
        return [(padding, padding)] * len(spatial)
    return [tuple(p) for p in padding]


def reference_pool(x, window, strides, padding, fn, aux=None):
    """fn(taps, valid, channel[, aux_taps]) per window; taps are row-major, 0 when padded.

    `aux` (same shape as x) supplies a second array's taps at the same positions."""
    n = len(window)
    strides = window if strides is None else strides
    spatial = x.shape[-1 - n : -1]
    pairs = _pairs(padding, spatial, window, strides)
    outs = [(L + lo + hi - k) // s + 1
            for L, k, s, (lo, hi) in zip(spatial, window, strides, pairs, strict=True)]
    batch = x.shape[: x.ndim - 1 - n]
    y = np.zeros(batch + tuple(outs) + x.shape[-1:], np.float64)
    for b in itertools.product(*map(range, batch)):
        for o in itertools.product(*map(range, outs)):
            for c in range(x.shape[-1]):
                taps, aux_taps, valid = [], [], []
                for off in itertools.product(*map(range, window)):
                    pos = [oi * s - lo + d
                           for oi, s, (lo, _), d in zip(o, strides, pairs, off, strict=True)]
                    inside = all(0 <= p < L for p, L in zip(pos, spatial, strict=True))
                    idx = b + tuple(pos) + (c,)
                    taps.append(float(x[idx]) if inside else 0.0)
                    aux_taps.append(float(aux[idx]) if inside and aux is not None else 0.0)
                    valid.append(inside)
                args = (np.asarray(taps), np.asarray(valid), c)
                y[b + o + (c,)] = fn(*args) if aux is None else fn(*args, np.asarray(aux_taps))
    return y


def _sigmoid(t):
    return 1.0 / (1.0 + np.exp(-t))


def _lse_ref(v, r):
    return math.log(np.mean(np.exp(r * v))) / r


def _random_config(seed):
    """Seeded config; the seed cycles the spatial rank (1-3) and the padding form."""
    rng = np.random.default_rng(seed)
    n = seed % 3 + 1
    window = tuple(int(k) for k in rng.integers(1, 4, size=n))
    if not any(k > 1 for k in window):
        window = (2,) + window[1:]
    strides = None if rng.random() < 0.3 else tuple(int(s) for s in rng.integers(1, 3, size=n))
    kind = seed % 4
    if kind == 0:
        padding = "SAME" if seed % 8 else "VALID"
    elif kind == 1:
        padding = min(k // 2 for k in window)
    else:
        padding = [(int(rng.integers(0, k // 2 + 1)), int(rng.integers(0, k // 2 + 1)))
                   for k in window]
    spatial = tuple(int(k + rng.integers(0, 4 if n < 3 else 2)) for k in window)
    return window, strides, padding, (2,) + spatial + (3,)


CONFIGS = [_random_config(seed) for seed in range(6)]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"w{c[0]}s{c[1]}p{c[2]}x{c[3]}")
def test_all_pools_match_bruteforce(config):
    window, strides, padding, shape = config
    rng = np.random.default_rng(zlib.crc32(repr(config).encode()))
    x = rng.normal(size=shape).astype(np.float32)
    logits = rng.normal(size=shape).astype(np.float32)
    c = shape[-1]
    p = rng.uniform(1.0, 4.0, size=c).astype(np.float32)
    r = rng.uniform(0.5, 3.0, size=c).astype(np.float32)
    alpha = rng.uniform(size=c).astype(np.float32)
    gate_shared = rng.normal(size=window).astype(np.float32)
    gate_per_c = rng.normal(size=window + (c,)).astype(np.float32)
    leaves = rng.normal(size=(4,) + window).astype(np.float32)
    tree_gates = rng.normal(size=(3,) + window + (c,)).astype(np.float32)
    geo = dict(window_shape=window, strides=strides, padding=padding)

    @jax.jit
    def run(x, logits):
        return {
            "gem": gem_pool(jnp.abs(x), **geo, p=p, eps=0.05),
            "lse": lse_pool(x, **geo, r=r),
            "soft": soft_pool(x, **geo),
            "lip": lip_pool(x, logits, **geo),
            "mixed": mixed_pool(x, **geo, alpha=alpha),
            "gated_shared": gated_pool(x, **geo, gate_weights=gate_shared),
            "gated_per_c": gated_pool(x, **geo, gate_weights=gate_per_c),
            "tree": tree_pool(x, **geo, leaf_filters=leaves, gate_weights=tree_gates),
            "median": median_pool(x, **geo),
            "stochastic_eval": stochastic_pool(x, **geo),
        }

    got = run(x, logits)

    def tree_ref(t, valid, ch):
        node = [None] * 7
        for m in range(4):
            node[3 + m] = float(leaves[m].reshape(-1) @ t)
        for m in (2, 1, 0):
            s = _sigmoid(tree_gates[m][..., ch].reshape(-1) @ t)
            node[m] = s * node[2 * m + 1] + (1 - s) * node[2 * m + 2]
        return node[0]

    def stochastic_ref(t, valid):
        w = np.maximum(t[valid], 0)
        probs = w / w.sum() if w.sum() > 0 else np.full(valid.sum(), 1 / valid.sum())
        return probs @ t[valid]

    def mix(t, valid, a):
        return a * t[valid].max() + (1 - a) * t[valid].mean()

    refs = {
        "gem": (np.abs(x),
                lambda t, v, ch: np.mean(np.maximum(t[v], 0.05) ** p[ch]) ** (1 / p[ch])),
        "lse": (x, lambda t, v, ch: _lse_ref(t[v], r[ch])),
        "soft": (x, lambda t, v, ch: np.exp(t[v]) @ t[v] / np.exp(t[v]).sum()),
        "mixed": (x, lambda t, v, ch: mix(t, v, alpha[ch])),
        "gated_shared": (x, lambda t, v, ch: mix(t, v, _sigmoid(gate_shared.reshape(-1) @ t))),
        "gated_per_c": (x, lambda t, v, ch: mix(t, v, _sigmoid(gate_per_c[..., ch].reshape(-1)
                                                                 @ t))),
        "tree": (x, tree_ref),
        "median": (x, lambda t, v, ch: np.sort(t[v])[(v.sum() - 1) // 2]),
        "stochastic_eval": (x, lambda t, v, ch: stochastic_ref(t, v)),
    }
    for name, (inp, fn) in refs.items():
        want = reference_pool(inp, window, strides, padding, fn)
        np.testing.assert_allclose(got[name], want, rtol=2e-5, atol=2e-5, err_msg=name)

    def lip_ref(t, v, ch, lt):
        w = np.exp(lt[v])
        return w @ t[v] / w.sum()

    want = reference_pool(x, window, strides, padding, lip_ref, aux=logits)
    np.testing.assert_allclose(got["lip"], want, rtol=2e-5, atol=2e-5, err_msg="lip")


def _blocks(x, k):
    """Non-overlapping k x k windows of a (B, H, W, C) array -> (B, H/k, W/k, C, k*k)."""
    b, h, w, c = x.shape
    t = x.reshape(b, h // k, k, w // k, k, c).transpose(0, 1, 3, 5, 2, 4)
    return t.reshape(b, h // k, w // k, c, k * k)


def test_gem_is_average_at_p1_and_tends_to_max():
    x = np.random.default_rng(1).uniform(0.1, 2.0, size=(2, 6, 6, 3)).astype(np.float32)
    pooled = jax.jit(lambda x, p: gem_pool(x, (2, 2), p=p))
    taps = _blocks(x.astype(np.float64), 2)
    np.testing.assert_allclose(pooled(x, 1.0), taps.mean(-1), rtol=1e-5)
    top = taps.max(-1)
    gaps = []
    for p in (4.0, 16.0, 64.0, 256.0):
        y = np.asarray(pooled(x, p), np.float64)
        # Power-mean bounds: max * n^(-1/p) <= GeM_p <= max, so GeM -> max as p grows.
        assert np.all(y <= top * (1 + 1e-5)) and np.all(y >= top * 4 ** (-1 / p) * (1 - 1e-5))
        gaps.append(np.max((top - y) / top))
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] <= 1 - 4 ** (-1 / 256) + 1e-5 < 0.006


def test_lse_lies_between_mean_and_max_and_tends_to_both():
    x = np.random.default_rng(2).normal(size=(2, 4, 6, 3)).astype(np.float32)
    pooled = jax.jit(lambda x, r: lse_pool(x, (2, 2), r=r))
    taps = _blocks(x.astype(np.float64), 2)
    mean, top = taps.mean(-1), taps.max(-1)
    for r in (0.5, 2.0, 8.0):
        y = np.asarray(pooled(x, r))
        assert np.all(y >= mean - 1e-5) and np.all(y <= top + 1e-5)
        assert np.all(y >= top + math.log(1 / 4) / r - 1e-5)
    np.testing.assert_allclose(pooled(x, 1e-3), mean, atol=2e-3)
    np.testing.assert_allclose(pooled(x, 400.0), top, atol=1e-2)


def test_every_pool_maps_a_constant_to_itself():
    x = np.full((2, 5, 4, 3), 1.75, np.float32)
    geo = dict(window_shape=(3, 3), strides=2, padding=1)
    rng = np.random.default_rng(3)
    leaves = rng.dirichlet(np.ones(9), size=2).reshape(2, 3, 3).astype(np.float32)

    @jax.jit
    def run(x, key):
        return {
            "gem": gem_pool(x, **geo, p=3.0),
            "lse": lse_pool(x, **geo, r=2.0),
            "soft": soft_pool(x, **geo),
            "lip": lip_pool(x, jnp.asarray(rng.normal(size=x.shape), x.dtype), **geo),
            "mixed": mixed_pool(x, **geo, alpha=0.3),
            "gated": gated_pool(x, **geo, gate_weights=jnp.ones((3, 3))),
            # Leaf responses are linear (padded taps hold 0): constant only without padding.
            "tree": tree_pool(x, (3, 3), 2, leaf_filters=leaves,
                              gate_weights=jnp.ones((1, 3, 3))),
            "median": median_pool(x, **geo),
            "stochastic_eval": stochastic_pool(x, **geo),
            "stochastic_train": stochastic_pool(x, **geo, key=key),
        }

    for name, y in run(x, jax.random.key(0)).items():
        assert y.shape == ((2, 2, 1, 3) if name == "tree" else (2, 3, 2, 3)), name
        np.testing.assert_allclose(y, 1.75, rtol=1e-6, err_msg=name)


def test_exponential_pools_are_stable_for_large_inputs():
    rng = np.random.default_rng(4)
    x = (1e4 * rng.normal(size=(1, 4, 4, 2))).astype(np.float32)
    taps = _blocks(x.astype(np.float64), 2)
    shifted = np.exp(taps - taps.max(-1, keepdims=True))
    soft_want = (shifted * taps).sum(-1) / shifted.sum(-1)
    lse_want = taps.max(-1) + np.log(shifted.mean(-1))
    got = jax.jit(lambda x: (soft_pool(x, 2), lse_pool(x, 2), lip_pool(x, x, 2),
                             gem_pool(jnp.abs(x), 2, p=60.0)))(x)
    for y in got:
        assert np.all(np.isfinite(y))
    np.testing.assert_allclose(got[0], soft_want, rtol=1e-6)
    np.testing.assert_allclose(got[1], lse_want, rtol=1e-6)
    np.testing.assert_allclose(got[2], soft_want, rtol=1e-6)
    gem_want = (np.mean(np.abs(taps) ** 60, -1)) ** (1 / 60)
    np.testing.assert_allclose(got[3], gem_want, rtol=1e-5)


POOLS = {
    "gem": lambda x, w, **k: gem_pool(jnp.abs(x), w, **k, p=2.5),
    "lse": lambda x, w, **k: lse_pool(x, w, **k, r=1.5),
    "soft": soft_pool,
    "lip": lambda x, w, **k: lip_pool(x, jnp.sin(3 * x.astype(jnp.float32)), w, **k),
    "mixed": lambda x, w, **k: mixed_pool(x, w, **k, alpha=0.25),
    "gated": lambda x, w, **k: gated_pool(x, w, **k, gate_weights=jnp.full(w, 0.3)),
    "tree": lambda x, w, **k: tree_pool(x, w, **k, leaf_filters=jnp.stack(
        [jnp.full(w, 0.2), jnp.full(w, -0.1)]), gate_weights=jnp.full((1,) + w, 0.5)),
    "stochastic_eval": stochastic_pool,
    "median": median_pool,
}


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_inputs_accumulate_in_float32(dtype):
    x = np.random.default_rng(5).normal(size=(2, 4, 4, 3)).astype(np.float32)
    low = jnp.asarray(x, dtype)
    wide = np.asarray(low.astype(jnp.float32))

    @jax.jit
    def run(a):
        return {name: f(a, (2, 2)) for name, f in POOLS.items()}

    got, want = run(low), run(wide)
    for name in POOLS:
        assert got[name].dtype == dtype, name
        # The only error is the final rounding to the half type (float32 internally).
        np.testing.assert_allclose(
            np.asarray(got[name], np.float32), np.asarray(want[name].astype(dtype), np.float32),
            rtol=1e-6, atol=0, err_msg=name)


def test_jit_and_vmap_agree_with_plain_calls():
    x = np.random.default_rng(6).normal(size=(3, 2, 5, 4, 2)).astype(np.float32)

    def run(a):
        return {name: f(a, (2, 3), strides=(2, 1), padding=1) for name, f in POOLS.items()}

    batched = jax.jit(run)(x)  # two batch dims
    mapped = jax.jit(jax.vmap(run))(x)  # vmap over the first
    single = jax.jit(run)(x[1])
    for name in POOLS:
        np.testing.assert_allclose(batched[name], mapped[name], rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(batched[name][1], single[name], rtol=1e-6, err_msg=name)


SMOOTH = ("gem", "lse", "soft", "lip", "mixed", "gated", "tree", "stochastic_eval")
GLOBAL = {"global_gem": lambda a: global_gem_pool(jnp.abs(a), p=2.5),
          "global_lse": lambda a: global_lse_pool(a, r=1.5), "global_soft": global_soft_pool}


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(7)
    # Away from 0, where GeM's clamp has its kink.
    x = rng.choice([-1, 1], size=(1, 4, 4, 2)) * rng.uniform(0.2, 2.0, size=(1, 4, 4, 2))
    direction = rng.normal(size=x.shape)
    weights = rng.normal(size=(1, 2, 2, 2))

    def loss(name, a):
        return jnp.sum(POOLS[name](a, (2, 2), strides=2) * weights)

    @jax.jit
    def grads_and_fd(a, d):
        out = {}
        for name in SMOOTH:
            g = jax.grad(lambda t, name=name: loss(name, t))(a)
            h = 1e-2
            fd = (loss(name, a + h * d) - loss(name, a - h * d)) / (2 * h)
            out[name] = (jnp.sum(g * d), fd)
        for name, f in GLOBAL.items():
            w = weights[:, 0, 0]  # (N, C)
            g = jax.grad(lambda t, f=f, w=w: jnp.sum(f(t) * w))(a)
            h = 1e-2
            fd = (jnp.sum(f(a + h * d) * w) - jnp.sum(f(a - h * d) * w)) / (2 * h)
            out[name] = (jnp.sum(g * d), fd)
        return out

    for name, (analytic, numeric) in grads_and_fd(x.astype(np.float32),
                                                  direction.astype(np.float32)).items():
        np.testing.assert_allclose(analytic, numeric, rtol=2e-2, atol=2e-3, err_msg=name)


def test_second_order_gradients_are_finite():
    x = np.random.default_rng(8).normal(size=(1, 4, 4, 2)).astype(np.float32)

    @jax.jit
    def hvps(a):
        return {name: jax.jvp(jax.grad(lambda t, f=POOLS[name]: jnp.sum(f(t, (2, 2)) ** 2)),
                              (a,), (jnp.ones_like(a),))[1] for name in SMOOTH}

    for name, h in hvps(x).items():
        assert np.all(np.isfinite(h)) and np.any(h != 0), name


def test_selecting_pools_send_each_window_gradient_to_one_element():
    x = np.random.default_rng(9).permutation(32).reshape(1, 4, 4, 2).astype(np.float32)

    @jax.jit
    def grads(a, key):
        return (jax.grad(lambda t: jnp.sum(median_pool(t, (2, 2))))(a),
                jax.grad(lambda t: jnp.sum(stochastic_pool(t, (2, 2), key=key)))(a))

    for g in grads(x, jax.random.key(3)):
        per_window = _blocks(np.asarray(g), 2)
        assert np.array_equal(np.sort(per_window, -1), np.broadcast_to([0, 0, 0, 1], (1, 2, 2, 2,
                                                                                       4)))


def test_median_keeps_integers_exact():
    x = np.random.default_rng(10).integers(-50, 50, size=(2, 6, 6, 1)).astype(np.int32)
    y = jax.jit(lambda a: median_pool(a, (3, 3), 1, 1))(x)
    assert y.dtype == jnp.int32
    want = reference_pool(x, (3, 3), (1, 1), 1, lambda t, v, c: np.sort(t[v])[(v.sum() - 1) // 2])
    np.testing.assert_array_equal(y, want)


# --- stochastic pooling: sampling distribution -------------------------------------------

def _stochastic_draws(window_values, copies, key):
    """`copies` independent windows holding `window_values` (2x2, row-major), one draw each."""
    x = np.broadcast_to(np.asarray(window_values, np.float32).reshape(1, 2, 2, 1),
                        (copies, 2, 2, 4)).copy()
    run = jax.jit(lambda a, k: (stochastic_pool(a, (2, 2), key=k), stochastic_pool(a[:1], (2, 2))))
    train, evaluation = run(x, key)
    return np.asarray(train).reshape(-1), float(evaluation[0, 0, 0, 0])


@pytest.mark.parametrize(
    "values, probs",
    [((1.0, 2.0, 3.0, 4.0), (0.1, 0.2, 0.3, 0.4)),
     ((-1.0, 0.0, 1.0, 3.0), (0.0, 0.0, 0.25, 0.75)),
     ((-2.0, -1.0, -3.0, -4.0), (0.25, 0.25, 0.25, 0.25))],
    ids=["positive", "mixed_sign", "non_positive"],
)
def test_stochastic_samples_follow_the_window_probabilities(values, probs):
    draws, evaluation = _stochastic_draws(values, 2500, jax.random.key(2013))
    n = draws.size  # 10,000 independent draws
    for value, p in zip(values, probs, strict=True):
        freq = np.mean(draws == value)
        # 5 binomial standard deviations (plus one count for p in {0, 1}).
        assert abs(freq - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1 / n, (value, freq, p)
    np.testing.assert_allclose(evaluation, np.dot(values, probs), rtol=1e-6)
    # Evaluation is the expectation of training.
    spread = math.sqrt(np.dot(probs, (np.asarray(values) - evaluation) ** 2) / n)
    assert abs(draws.mean() - evaluation) <= 5 * spread + 1e-6


def test_stochastic_all_zero_window_gives_zero_and_keys_matter():
    run = jax.jit(lambda a, k: (stochastic_pool(a, (2, 2)), stochastic_pool(a, (2, 2), key=k)))
    y = np.random.default_rng(11).uniform(size=(2, 8, 8, 4)).astype(np.float32)
    y[0, :2, :2, 0] = 0.0
    (evaluation, a), (_, b), (_, c) = (run(y, jax.random.key(s)) for s in (1, 1, 2))
    assert float(evaluation[0, 0, 0, 0]) == 0.0 and float(a[0, 0, 0, 0]) == 0.0
    a, b, c = np.asarray(a), np.asarray(b), np.asarray(c)
    assert np.array_equal(a, b) and not np.array_equal(a, c)



def test_stochastic_propagates_nan_in_both_modes_with_finite_gradients_elsewhere():
    # 16 windows of 2x2; windows 0 and 5 hold a NaN, the rest are positive.
    x = np.random.default_rng(13).uniform(0.5, 2.0, size=(1, 8, 8, 1)).astype(np.float32)
    x[0, 1, 0, 0] = x[0, 2, 3, 0] = np.nan
    nan_window = np.zeros((4, 4), bool)
    nan_window[0, 0] = nan_window[1, 1] = True

    @jax.jit
    def run(a, key):
        def train(t):
            return stochastic_pool(t, (2, 2), key=key)
        grad = jax.grad(lambda t: jnp.sum(jnp.where(nan_window[None, :, :, None], 0, train(t))))
        return train(a), stochastic_pool(a, (2, 2)), grad(a)

    for seed in range(3):  # before: training drew a finite element 3 times in 4
        train, evaluation, grad = (np.asarray(v)[0, ..., 0] for v in run(x, jax.random.key(seed)))
        for y in (train, evaluation):
            assert np.array_equal(np.isnan(y), nan_window), y
        # Each finite window sends its gradient to exactly one element.
        assert np.isfinite(grad).all()
        per_window = _blocks(grad[None, ..., None], 2)[0, ..., 0, :]
        assert np.array_equal(per_window.sum(-1), np.where(nan_window, 0, 1))


def test_median_propagates_nan_as_torch_median_and_keeps_the_lower_median():
    x = np.array([[1, 5, 2, 2], [3, np.nan, 4, 0], [7, 6, 8, 9], [1, 2, np.nan, np.nan]],
                 np.float32).reshape(1, 4, 4, 1)
    y, grad = jax.jit(lambda a: (median_pool(a, (2, 2)),
                                 jax.grad(lambda t: median_pool(t, (2, 2))[0, 0, 0, 0])(a)))(x)
    # Windows: {1, 5, 3, nan} -> nan; {2, 2, 4, 0} -> lower median 2; {7, 6, 1, 2} -> 2;
    # {8, 9, nan, nan} -> nan.
    np.testing.assert_array_equal(np.asarray(y)[0, ..., 0], [[np.nan, 2], [2, np.nan]])
    assert np.asarray(grad)[0, 1, 1, 0] == 1 and np.asarray(grad).sum() == 1  # to the NaN


# --- global forms ----------------------------------------------------------------------

def test_global_pools_match_formulas():
    rng = np.random.default_rng(12)
    x = rng.normal(size=(2, 3, 4, 3)).astype(np.float32)
    p = rng.uniform(1, 5, size=3).astype(np.float32)
    r = rng.uniform(0.5, 2, size=(2, 3)).astype(np.float32)
    got = jax.jit(lambda a: (global_gem_pool(jnp.abs(a), p=p), global_lse_pool(a, r=r),
                             global_soft_pool(a), global_soft_pool(a[:, 0], keepdims=True)))(x)
    v = x.reshape(2, 12, 3).astype(np.float64)
    gem = np.mean(np.maximum(np.abs(v), 1e-6) ** p, axis=1) ** (1 / p)
    lse = np.log(np.mean(np.exp(r[:, None] * v), axis=1)) / r
    soft = (np.exp(v) * v).sum(1) / np.exp(v).sum(1)
    np.testing.assert_allclose(got[0], gem, rtol=1e-5)
    np.testing.assert_allclose(got[1], lse, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[2], soft, rtol=1e-5)
    w = x[:, 0].astype(np.float64)
    assert got[3].shape == (2, 1, 3)
    np.testing.assert_allclose(got[3][:, 0], (np.exp(w) * w).sum(1) / np.exp(w).sum(1),
                               rtol=1e-5)


# --- bad arguments: ValueError/TypeError naming the argument, before tracing --------------

X = np.zeros((1, 4, 4, 2), np.float32)
W2 = np.ones((2, 2), np.float32)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: soft_pool(X, (5, 5)), ValueError, "window_shape"),
        (lambda: soft_pool(X, (3, 3), padding=2), ValueError, "padding"),
        (lambda: soft_pool(X, (2, 2), strides=0), ValueError, "strides"),
        (lambda: soft_pool(X, (2, 2, 2, 2)), ValueError, "at least 5 dims"),
        (lambda: soft_pool(X, "2"), TypeError, "window_shape"),
        (lambda: soft_pool(X.astype(np.int32), (2, 2)), TypeError, "x.dtype"),
        (lambda: stochastic_pool(X.astype(np.int32), (2, 2)), TypeError, "x.dtype"),
        (lambda: median_pool(X.astype(np.complex64), (2, 2)), TypeError, "x.dtype"),
        (lambda: gem_pool(X, (2, 2), p=0.0), ValueError, "p"),
        (lambda: gem_pool(X, (2, 2), p="3"), TypeError, "p"),
        (lambda: gem_pool(X, (2, 2), eps=-1.0), ValueError, "eps"),
        (lambda: gem_pool(X, (2, 2), p=np.ones(3)), ValueError, "p.shape"),
        (lambda: lse_pool(X, (2, 2), r=-1.0), ValueError, "r"),
        (lambda: lip_pool(X, X[..., :1], (2, 2)), ValueError, "logits.shape"),
        (lambda: mixed_pool(X, (2, 2), alpha=1.5), ValueError, "alpha"),
        (lambda: mixed_pool(X, (2, 2), alpha=np.full(3, 0.5)), ValueError, "alpha.shape"),
        (lambda: gated_pool(X, (2, 2), gate_weights=np.ones((3, 3))), ValueError,
         "gate_weights.shape"),
        (lambda: gated_pool(X, (2, 2), gate_weights=np.ones((2, 2), int)), TypeError,
         "gate_weights.dtype"),
        (lambda: tree_pool(X, (2, 2), leaf_filters=np.ones((3, 2, 2)),
                           gate_weights=np.ones((2, 2, 2))), ValueError, "leaf_filters"),
        (lambda: tree_pool(X, (2, 2), leaf_filters=np.ones((2, 2, 2)),
                           gate_weights=W2), ValueError, "gate_weights.shape"),
        (lambda: global_gem_pool(X[0, 0]), ValueError, "x.shape"),
        (lambda: global_soft_pool(X, keepdims=1), TypeError, "keepdims"),
    ],
)
def test_bad_arguments_raise_before_tracing(call, error, match):
    with pytest.raises(error, match=match):
        call()
