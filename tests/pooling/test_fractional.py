"""Fractional max pooling: PyTorch parity from fixtures, the paper's region rules, transforms.

Regions are read back from the pool itself: on an input that increases along every
spatial dim, each output is its region's last element; on the negated input, its first.
The fixtures come from `tools/make_torch_fixtures_fractional.py` (torch is never imported).
"""

import itertools
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from poolnets.pooling import fractional_max_pool

FIXTURES = np.load(pathlib.Path(__file__).parent / "fixtures/fractional_torch.npz")


@pytest.mark.parametrize("case", range(int(FIXTURES["num_cases"])))
def test_reproduces_torch_given_its_random_samples(case):
    x = np.moveaxis(FIXTURES[f"{case}_x"], 1, -1)  # NC... -> N...C
    samples = FIXTURES[f"{case}_samples"]
    # PyTorch's 2-D kernel reads sample 0 for the width; 3-D reads them in spatial order.
    samples = samples[..., ::-1] if samples.shape[-1] == 2 else samples
    kernel = tuple(FIXTURES[f"{case}_kernel"].tolist())
    out = tuple(FIXTURES[f"{case}_output_size"].tolist())
    y = jax.jit(lambda a, s: fractional_max_pool(a, out, kernel_size=kernel, samples=s))(
        x, samples)
    np.testing.assert_array_equal(y, np.moveaxis(FIXTURES[f"{case}_y"], 1, -1))


def _read_regions(pool, spatial, planes):
    """Per-plane `[start, stop)` of every output along every dim, read back from `pool`."""
    n = len(spatial)
    code = sum(np.indices(spatial)[d] * math.prod(spatial[d + 1:]) for d in range(n))
    probe = np.broadcast_to(code[..., None], (planes,) + spatial + (1,)).astype(np.float32)
    last, first = (np.asarray(pool(v)).astype(np.int64) for v in (probe, -probe))
    first = -first
    stops = [last // math.prod(spatial[d + 1:]) % spatial[d] + 1 for d in range(n)]
    starts = [first // math.prod(spatial[d + 1:]) % spatial[d] for d in range(n)]
    return starts, stops


def _check_paper_regions(starts, stops, n_in, n_out, overlapping):
    """Graham's rule along one dim, for every plane and position (regions on `axis`)."""
    assert np.all(starts[:, 0] == 0)
    inc = np.diff(np.concatenate([starts, np.full((len(starts), 1), n_in)], axis=1), axis=1)
    assert set(np.unique(inc)) <= {1, 2}
    assert np.all((inc == 2).sum(axis=1) == n_in - n_out)
    next_start = np.concatenate([starts[:, 1:], np.full((len(starts), 1), n_in)], axis=1)
    want_stop = np.minimum(next_start + 1, n_in) if overlapping else next_start
    np.testing.assert_array_equal(stops, want_stop)


@pytest.mark.parametrize("overlapping", [False, True])
@pytest.mark.parametrize("pseudo_random", [False, True])
def test_paper_regions_cover_the_input_and_match_bruteforce(overlapping, pseudo_random):
    spatial, out, planes = (9, 7, 5), (6, 4, 5), 3
    key = jax.random.key(1412)
    pool = jax.jit(lambda a: fractional_max_pool(
        a, out, key=key, overlapping=overlapping, pseudo_random=pseudo_random))
    starts, stops = _read_regions(pool, spatial, planes)
    for d in range(3):
        # Each region is a product of intervals: the interval along d is the same for all
        # positions along the other dims.
        along = np.moveaxis(starts[d][..., 0], d + 1, -1).reshape(-1, out[d])
        stop_along = np.moveaxis(stops[d][..., 0], d + 1, -1).reshape(-1, out[d])
        _check_paper_regions(along, stop_along, spatial[d], out[d], overlapping)
    x = np.random.default_rng(0).normal(size=(planes,) + spatial + (1,)).astype(np.float32)
    y = np.asarray(pool(x))
    for b, o in itertools.product(range(planes), itertools.product(*map(range, out))):
        box = tuple(slice(starts[d][(b,) + o + (0,)], stops[d][(b,) + o + (0,)]) for d in range(3))
        assert y[(b,) + o + (0,)] == x[(b,) + box + (0,)].max()


def test_pseudo_random_boundaries_follow_the_papers_formula():
    n_in, n_out = 25, 16
    u = np.array([0.0, 0.013, 0.25, 0.5, 0.77, 0.999], np.float32)
    pool = jax.jit(lambda a: fractional_max_pool(a, (n_out,), samples=u[:, None, None],
                                                 pseudo_random=True))
    starts, _ = _read_regions(pool, (n_in,), len(u))
    alpha = n_in / n_out
    i = np.arange(n_out)
    want = np.ceil(alpha * (i + u[:, None].astype(np.float64))) - np.ceil(alpha * u[:, None])
    np.testing.assert_array_equal(starts[0][..., 0], want)


def test_random_increments_are_uniformly_placed_and_drawn_per_plane():
    n_in, n_out, planes = 10, 7, 3000
    pool = jax.jit(lambda a: fractional_max_pool(a, (n_out,), key=jax.random.key(7)))
    starts, _ = _read_regions(pool, (n_in,), planes)
    inc = np.diff(np.concatenate([starts[0][..., 0], np.full((planes, 1), n_in)], 1), axis=1)
    freq, p = (inc == 2).mean(axis=0), (n_in - n_out) / n_out
    assert np.all(np.abs(freq - p) <= 5 * math.sqrt(p * (1 - p) / planes)), freq
    assert len({tuple(row) for row in inc}) > 20


def test_deterministic_regions_and_extreme_sizes():
    x = np.random.default_rng(1).normal(size=(2, 8, 6, 3)).astype(np.float32)

    @jax.jit
    def run(a):
        return (fractional_max_pool(a, (5, 4)),
                fractional_max_pool(a, (5, 4), samples=jnp.full(2, 0.5), pseudo_random=True),
                fractional_max_pool(a, (8, None)),
                fractional_max_pool(a, (4, 3)))

    none_key, half_phase, same, half = run(x)
    np.testing.assert_array_equal(none_key, half_phase)
    np.testing.assert_array_equal(same, x)
    np.testing.assert_array_equal(half, x.reshape(2, 4, 2, 3, 2, 3).max(axis=(2, 4)))


def test_vmap_grad_and_integer_inputs():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 7, 9, 2)).astype(np.float32)
    s = rng.uniform(size=(4, 2, 2)).astype(np.float32)

    def pool(a, smp):
        return fractional_max_pool(a, (5, 6), kernel_size=2, samples=smp)

    batched = jax.jit(pool)(x, s)
    mapped = jax.jit(jax.vmap(pool))(x, s)
    np.testing.assert_array_equal(batched, mapped)
    g = jax.jit(jax.grad(lambda a: jnp.sum(fractional_max_pool(
        a, (5, 6), key=jax.random.key(0)))))(x)
    # Disjoint regions: every output's gradient lands on exactly one input element.
    assert np.all((g == 0) | (g == 1)) and g.sum() == 4 * 5 * 6 * 2
    ints = jax.jit(lambda a: fractional_max_pool(a, (5, 6), key=jax.random.key(0)))(
        (x * 100).astype(np.int32))
    assert ints.dtype == jnp.int32


X = np.zeros((2, 8, 8, 3), np.float32)
KEY = jax.random.key(0)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(output_size=(3, 4)), ValueError, "output_size"),
        (dict(output_size=(9, 4)), ValueError, "output_size"),
        (dict(output_size=4), TypeError, "output_size"),
        (dict(output_size=(0, 4)), ValueError, "output_size"),
        (dict(output_size=(4, 4, 4, 4)), ValueError, "x.shape"),
        (dict(output_size=(7, 4), kernel_size=3), ValueError, "kernel_size"),
        (dict(output_size=(4, 4), kernel_size=(2, 2, 2)), ValueError, "kernel_size"),
        (dict(output_size=(4, 4), kernel_size=2, overlapping=True), ValueError, "overlapping"),
        (dict(output_size=(4, 4), overlapping=1), TypeError, "overlapping"),
        (dict(output_size=(4, 4), samples=np.zeros(2)), ValueError, "pseudo_random"),
        (dict(output_size=(4, 4), samples=np.zeros(2), key=KEY, pseudo_random=True),
         ValueError, "key or samples"),
        (dict(output_size=(4, 4), samples=np.zeros(3), kernel_size=2), ValueError,
         "samples.shape"),
        (dict(output_size=(4, 4), samples=np.zeros(2, int), kernel_size=2), TypeError,
         "samples.dtype"),
    ],
)
def test_bad_arguments_raise_before_tracing(kwargs, error, match):
    with pytest.raises(error, match=match):
        fractional_max_pool(X, **kwargs)
