"""Frequency-domain pools: spectral pooling (DFT crop) and Haar wavelet pooling.

Spectral pooling: Rippel, Snoek & Adams, "Spectral Representations for Convolutional
Neural Networks", NeurIPS 2015 (arXiv:1506.03767). Wavelet pooling: Williams & Li,
"Wavelet Pooling for Convolutional Neural Networks", ICLR 2018 (here only the Haar
low-low band, which is what survives their decompose / discard-details step).

Layout `(*batch, *spatial, features)`. `spectral_pool` is adaptive: its spatial rank is
`len(output_size)` (an int `output_size` means `x.ndim - 2` spatial dims). `wavelet_pool`
has no size argument: its rank is `spatial_dims`, else `x.ndim - 2` (see `blur.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from poolnets.pooling.blur import check_float, compute_dtype, spatial_rank


def _output_sizes(x_shape, output_size) -> tuple[tuple[int, int], ...]:
    """(input length, output length) per spatial dim, validated."""
    if isinstance(output_size, Sequence) and not isinstance(output_size, str):
        if len(output_size) == 0:
            raise ValueError(f"output_size must have at least one entry; got {output_size!r}")
        n = len(output_size)
        entries = tuple(output_size)
    elif isinstance(output_size, int | np.integer) and not isinstance(output_size, bool):
        n = spatial_rank(len(x_shape), None)
        entries = (int(output_size),) * n
    else:
        raise TypeError(
            "output_size must be an int or a sequence of ints/None; "
            f"got output_size={output_size!r}"
        )
    if len(x_shape) < n + 1:
        raise ValueError(
            f"x must have at least {n + 1} dims for output_size={output_size!r}; "
            f"got x.shape={x_shape}"
        )
    spatial = x_shape[len(x_shape) - 1 - n : -1]
    pairs = []
    for length, out in zip(spatial, entries, strict=True):
        if out is None:
            out = length
        if isinstance(out, bool) or not isinstance(out, int | np.integer):
            raise TypeError(
                f"output_size entries must be ints or None; got output_size={output_size!r}"
            )
        if not 1 <= out <= length:
            raise ValueError(
                f"output_size entries must be in 1..input length (spectral pooling only "
                f"downsamples); got output_size={output_size!r} for spatial shape {spatial}"
            )
        pairs.append((int(length), int(out)))
    return tuple(pairs)


def _crop_spectrum(spec: jax.Array, axis: int, length: int, out: int) -> jax.Array:
    """Keep the `out` lowest frequencies of a length-`length` DFT along `axis`.

    Frequencies |k| < out / 2 are copied. For even `out` the output's Nyquist bin stands
    for both +out/2 and -out/2, so it receives their sum (for a real signal 2 Re X[out/2],
    which keeps the spectrum conjugate-symmetric and the inverse real).
    """
    if out == length:
        return spec
    def take(lo: int, hi: int) -> jax.Array:  # frequencies lo..hi-1, negatives wrap
        return jax.lax.slice_in_dim(spec, lo % length, (hi - 1) % length + 1, axis=axis)

    half = out // 2
    if out % 2:
        parts = [take(0, half + 1)] + ([take(-half, 0)] if half else [])
    else:
        nyquist = take(half, half + 1) + take(-half, -half + 1)
        parts = [take(0, half), nyquist] + ([take(-half + 1, 0)] if half > 1 else [])
    return jnp.concatenate(parts, axis=axis)


def spectral_pool(x: jax.Array, output_size: int | Sequence[int | None]) -> jax.Array:
    """Spectral pooling (Rippel et al. 2015): crop the DFT to its lowest frequencies.

    Per spatial dim (separably; the N-d DFT is a product of 1-D ones): `X = fft(x)`, keep the
    `M` frequencies `k = -ceil(M/2)+1 .. floor(M/2)` (Nyquist bin folded, see
    `_crop_spectrum`), `y = real(ifft_M(X_crop)) * M / L`.

    Scale convention: the factor `M / L` makes `y` the samples of the trigonometric
    interpolant of `x` at positions `m * L / M`, so the mean is preserved, a constant stays
    that constant, and a real signal band-limited to |k| <= M / 2 is reproduced exactly on
    the coarser grid (at |k| = M / 2 only its cosine part survives there, and the folded
    Nyquist bin gives exactly that). The bare crop `ifft_M(crop(fft_L(x)))` (NumPy's DFT
    normalisation) would be `L / M` times larger per dim; a constant factor is absorbed by
    the next layer. Equal to `scipy.signal.resample` applied per axis (tested).

    Args:
      x: `(*batch, *spatial, C)`, floating point.
      output_size: int (every spatial dim, `x.ndim - 2` dims) or one entry per spatial dim;
        None keeps that dim. Each entry in 1..L (downsampling only).

    Returns:
      `(*batch, *output_size, C)`, real, dtype of `x`. FFTs run in float32 (complex64).
    """
    x = check_float(x, "spectral_pool")
    pairs = _output_sizes(x.shape, output_size)
    n = len(pairs)
    y = x.astype(compute_dtype(x.dtype))
    for i, (length, out) in enumerate(pairs):
        if out == length:
            continue
        axis = x.ndim - 1 - n + i
        spec = _crop_spectrum(jnp.fft.fft(y, axis=axis), axis, length, out)
        y = jnp.real(jnp.fft.ifft(spec, axis=axis)) * (out / length)
    return y.astype(x.dtype)


def wavelet_pool(
    x: jax.Array, *, levels: int = 1, orthonormal: bool = False, spatial_dims: int | None = None
) -> jax.Array:
    """Haar wavelet pooling: the low-low (approximation) band of `levels` Haar DWT levels.

    One level maps each `2 x ... x 2` block (`2**n` elements) to
    `sum(block) / 2**n` (default: the block mean, so constants and the mean are kept and the
    scale matches average pooling) or, with `orthonormal=True`, `sum(block) / 2**(n/2)`
    (the orthonormal Haar LL band; `sum / 2` in 2-D). An odd length is first extended by
    repeating its last sample (PyWavelets' "symmetric" mode), so each level maps `L` to
    `ceil(L / 2)`; with the mean scale this equals
    `avg_pool(x, 2, 2, ceil_mode=True, count_include_pad=False)`.

    Args:
      x: `(*batch, *spatial, C)`, floating point.
      levels: number of DWT levels (>= 1); output length `ceil(L / 2**levels)`.
      orthonormal: scale convention (above).
      spatial_dims: spatial rank; default `x.ndim - 2`.
    """
    x = check_float(x, "wavelet_pool")
    if isinstance(levels, bool) or not isinstance(levels, int | np.integer) or levels < 1:
        raise ValueError(f"levels must be an int >= 1; got levels={levels!r}")
    if not isinstance(orthonormal, bool):
        raise TypeError(f"orthonormal must be a bool; got orthonormal={orthonormal!r}")
    n = spatial_rank(x.ndim, spatial_dims)
    scale = 2.0 ** (-n / 2 if orthonormal else -n)
    first = x.ndim - 1 - n
    y = x.astype(compute_dtype(x.dtype))
    for _ in range(int(levels)):
        pad = [(0, 0)] * y.ndim
        for axis in range(first, first + n):
            pad[axis] = (0, y.shape[axis] % 2)
        y = jnp.pad(y, pad, mode="edge")
        split = list(y.shape[:first])
        for axis in range(first, first + n):
            split += [y.shape[axis] // 2, 2]
        y = y.reshape((*split, y.shape[-1]))
        y = y.sum(axis=tuple(first + 2 * i + 1 for i in range(n))) * scale
    return y.astype(x.dtype)
