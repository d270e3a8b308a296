"""Fractional max pooling (Graham 2014), N-dimensional, with PyTorch's region rule as an option.

Pooling regions are products of per-dimension intervals, so the max over a region is a
max over one interval per spatial dim in turn (separable). Regions are drawn per
plane (every batch index and feature gets its own layout, as in PyTorch).

Paper rule (`kernel_size=None`). Along one dim of length `n_in` pooled to `n_out` with
`n_in / 2 <= n_out <= n_in`, the boundaries `0 = a_0 < a_1 < ... < a_{n_out} = n_in`
grow by 1 or 2:

* random increments (`pseudo_random=False`): a uniformly random arrangement of
  `n_in - n_out` twos and `2 n_out - n_in` ones;
* pseudo-random increments (`pseudo_random=True`): `a_i = ceil(alpha (i + u)) -
  ceil(alpha u)` with `alpha = n_in / n_out` and `u ~ U[0, 1)` (computed exactly in
  integers: `ceil((i n_in + s) / n_out) - ceil(s / n_out)`, `s = ceil(u n_in)`).

Disjoint regions are `[a_i, a_{i+1})` and tile the input; overlapping regions are
`[a_i, a_{i+1}]` (closed, so neighbours share their boundary element; the last region
stops at the input's end).

PyTorch rule (`kernel_size=k`, `FractionalMaxPool2d/3d`): windows of fixed size `k`
starting at `s_i = int((i + u) alpha) - int(u alpha)` for `i < n_out - 1` and
`s_{n_out-1} = n_in - k`, with `alpha = (n_in - k) / (n_out - 1)` in the samples' float
dtype (ATen's `generate_intervals`). Needs `n_out + k - 1 <= n_in`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from poolnets.pooling.geometry import as_array, normalize_tuple
from poolnets.pooling.window_taps import check_key, uniform_noise

_DETERMINISTIC_U = 0.5


def _output_sizes(x_shape: tuple[int, ...], output_size: Sequence[int | None]) -> tuple:
    if isinstance(output_size, str) or not isinstance(output_size, Sequence):
        raise TypeError(
            "output_size must be a tuple with one entry (int or None) per spatial dim; got "
            f"output_size={output_size!r}"
        )
    n = len(output_size)
    if n == 0:
        raise ValueError(f"output_size must have at least one entry; got {output_size!r}")
    if len(x_shape) < n + 1:
        raise ValueError(
            f"x must have at least {n + 1} dims (*batch, {n} spatial, features) for "
            f"output_size={output_size!r}; got x.shape={x_shape}"
        )
    spatial = x_shape[-1 - n : -1]
    sizes = []
    for size, length in zip(output_size, spatial, strict=True):
        if size is None:
            sizes.append(length)
        elif isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
            raise ValueError(f"output_size entries must be ints >= 1 or None; got {output_size!r}")
        else:
            sizes.append(int(size))
    return spatial, tuple(sizes)


def _check_sizes(spatial, sizes, kernel, output_size, kernel_size) -> None:
    for length, size, k in zip(spatial, sizes, kernel or (None,) * len(sizes), strict=True):
        if k is None and not size <= length <= 2 * size:
            raise ValueError(
                "fractional_max_pool needs input/2 <= output <= input on every spatial dim; "
                f"got output_size={output_size!r} for spatial shape {spatial}"
            )
        if k is not None and size + k - 1 > length:
            raise ValueError(
                f"kernel_size={kernel_size!r} with output_size={output_size!r} needs "
                f"output + kernel - 1 <= input on every dim (PyTorch's rule); got spatial "
                f"shape {spatial}"
            )


def _paper_boundaries(u: jax.Array, n_in: int, n_out: int) -> jax.Array:
    """Pseudo-random boundaries `a_0..a_{n_out}` for phases `u` (..., 1) -> (..., n_out + 1)."""
    s = jnp.ceil(u * n_in).astype(jnp.int32)
    i = jnp.arange(n_out + 1, dtype=jnp.int32)
    return -((-(i * n_in + s)) // n_out) + (-s // n_out)


def _random_boundaries(key: jax.Array, plane: tuple, n_in: int, n_out: int) -> jax.Array:
    """Boundaries from a uniformly random arrangement of the 1/2 increments, per plane."""
    twos = n_in - n_out
    increments = jnp.asarray([2] * twos + [1] * (n_out - twos), dtype=jnp.int32)
    order = jnp.argsort(uniform_noise(key, plane + (n_out,)), axis=-1)
    steps = increments[order]
    zero = jnp.zeros(plane + (1,), jnp.int32)
    return jnp.concatenate([zero, jnp.cumsum(steps, axis=-1)], axis=-1)


def _torch_starts(u: jax.Array, n_in: int, n_out: int, k: int) -> jax.Array:
    """ATen's `generate_intervals` on phases `u` (..., 1), in `u`'s float dtype."""
    last = jnp.full(u.shape[:-1] + (1,), n_in - k, jnp.int32)
    if n_out == 1:
        return last
    alpha = (np.asarray(n_in - k, u.dtype) / np.asarray(n_out - 1, u.dtype)).astype(u.dtype)
    i = jnp.arange(n_out - 1, dtype=u.dtype)
    starts = ((i + u) * alpha).astype(jnp.int32) - (u * alpha).astype(jnp.int32)
    return jnp.concatenate([starts, last], axis=-1)


def _max_over_intervals(y, axis, starts, ends, width):
    """Max of `y` along `axis` over `[starts, ends)`; starts/ends are `(*plane_batch, out, C)`."""
    nb = starts.ndim - 2
    out_shape = y.shape[:axis] + (starts.shape[-2],) + y.shape[axis + 1 :]
    lead, trail = axis - nb, y.ndim - 1 - axis - 1  # spatial dims before / after `axis`

    def place(idx):
        idx = idx.reshape(idx.shape[:nb] + (1,) * lead + idx.shape[nb:nb + 1]
                          + (1,) * trail + idx.shape[-1:])
        return jnp.broadcast_to(idx, out_shape)

    # Duplicated taps (start + j clipped to end - 1) never change a max: no masking needed.
    result = None
    for j in range(width):
        idx = place(jnp.minimum(starts + j, ends - 1))
        vals = jnp.take_along_axis(y, idx, axis=axis)
        result = vals if result is None else jnp.maximum(result, vals)
    return result


def fractional_max_pool(
    x: jax.Array,
    output_size: Sequence[int | None],
    *,
    key: jax.Array | None = None,
    overlapping: bool = False,
    pseudo_random: bool = False,
    kernel_size: int | Sequence[int] | None = None,
    samples: jax.Array | None = None,
) -> jax.Array:
    """Fractional max pooling (Graham 2014, "Fractional Max-Pooling", arXiv:1412.6071).

    `(*batch, *spatial, C) -> (*batch, *output_size, C)`, `len(output_size)` spatial dims.
    Regions (module docstring) are drawn independently for every plane `(*batch, c)`.

    Args:
      x: input, any dtype with an order (the max is taken in `x.dtype`).
      output_size: one int per spatial dim (`None` keeps that dim); with the paper rule
        every entry lies in `[input / 2, input]`.
      key: one PRNG key for the regions (typed, or legacy uint32 `(2,)`; a batch of keys
        is a ValueError: `jax.vmap` maps over keys). `None` gives deterministic
        evaluation regions: the pseudo-random layout with phase `u = 1/2` in every plane
        (for either rule).
      overlapping: paper rule only; closed regions `[a_i, a_{i+1}]` instead of disjoint.
      pseudo_random: paper rule only; pseudo-random instead of random increments.
      kernel_size: extension for PyTorch parity: use `FractionalMaxPool2d/3d`'s rule
        with this window (int or one per spatial dim). Its starts are pseudo-random, so
        `overlapping` must stay False and `pseudo_random` has no effect.
      samples: extension: phases `u` in `[0, 1)`, shape broadcastable to
        `(*batch, C, num_spatial)`, one per spatial dim **in spatial order**; replaces
        `key`. Requires `kernel_size` or `pseudo_random=True`. To reproduce PyTorch pass
        its `_random_samples` `(N, C, 3)` as is for 3-D, and `[..., ::-1]` for 2-D
        (PyTorch's 2-D kernel reads sample 0 for width, sample 1 for height). Exact for
        float32 samples (float64 needs `jax_enable_x64`); values are not range-checked.

    Returns:
      The pooled array, `x.dtype`.
    """
    x = as_array(x, "fractional_max_pool")
    if key is not None:
        check_key(key, "fractional_max_pool")
    spatial, sizes = _output_sizes(x.shape, output_size)
    n = len(sizes)
    if not isinstance(overlapping, bool) or not isinstance(pseudo_random, bool):
        raise TypeError(
            f"overlapping and pseudo_random must be bools; got overlapping={overlapping!r}, "
            f"pseudo_random={pseudo_random!r}"
        )
    kernel = None if kernel_size is None else normalize_tuple(kernel_size, n, "kernel_size")
    if kernel is not None and overlapping:
        raise ValueError(
            f"overlapping=True is a paper-rule option; PyTorch's rule (kernel_size="
            f"{kernel_size!r}) fixes the window size"
        )
    _check_sizes(spatial, sizes, kernel, output_size, kernel_size)
    plane = x.shape[: x.ndim - 1 - n] + x.shape[-1:]
    if samples is not None:
        if key is not None:
            raise ValueError("pass key or samples, not both; got both")
        if kernel is None and not pseudo_random:
            raise ValueError(
                "samples are phases of the pseudo-random rule; they need kernel_size or "
                "pseudo_random=True, got pseudo_random=False"
            )
        samples = jnp.asarray(samples)
        if not jnp.issubdtype(samples.dtype, jnp.floating):
            raise TypeError(f"samples must be floating point; got samples.dtype={samples.dtype}")
        try:
            samples = jnp.broadcast_to(samples, plane + (n,))
        except ValueError:
            raise ValueError(
                f"samples must broadcast to (*batch, C, num_spatial)={plane + (n,)}; got "
                f"samples.shape={samples.shape}"
            ) from None
    elif key is not None:
        samples = uniform_noise(key, plane + (n,))
    else:
        samples = jnp.full(plane + (n,), _DETERMINISTIC_U, jnp.float32)

    # Planes in (*batch, out, C) order so the index arrays line up with y's layout.
    def to_layout(a):
        return jnp.moveaxis(a, len(plane) - 1, -1)

    y = x
    for d in range(n):
        axis = x.ndim - 1 - n + d
        n_in, n_out = spatial[d], sizes[d]
        u = samples[..., d : d + 1]
        if kernel is not None:
            starts = _torch_starts(u, n_in, n_out, kernel[d])
            ends, width = starts + kernel[d], kernel[d]
        else:
            if key is not None and not pseudo_random:
                bounds = _random_boundaries(jax.random.fold_in(key, d), plane, n_in, n_out)
            else:
                bounds = _paper_boundaries(u, n_in, n_out)
            starts = bounds[..., :-1]
            ends = jnp.minimum(bounds[..., 1:] + 1, n_in) if overlapping else bounds[..., 1:]
            width = 3 if overlapping else 2
        y = _max_over_intervals(y, axis, to_layout(starts), to_layout(ends), width)
    return y

