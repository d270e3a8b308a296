"""Anti-aliased downsampling: low-pass (binomial) blur, then subsample.

Zhang, "Making Convolutional Networks Shift-Invariant Again", ICML 2019
(arXiv:1904.11486). Subsampling without low-pass filtering aliases; Zhang keeps the
dense evaluation of each layer (max, conv or avg with stride 1) and moves the stride
into a fixed depthwise binomial blur:

    MaxPool(k, s)  ->  MaxPool(k, stride 1)  -> BlurPool(s)     (`max_blur_pool`)
    Conv(k, s)     ->  Conv(k, stride 1) -> activation -> BlurPool(s)  (`conv_blur_pool`)
    AvgPool(k, s)  ->  BlurPool(s)                              (`blur_pool`; the box
                       filter is replaced by a better low-pass; `avg_blur_pool` keeps it)

Filters: the 1-D filter of size `f` (1..7) is row `f - 1` of Pascal's triangle divided by
`2 ** (f - 1)` ([1], [1,1]/2, [1,2,1]/4, ..., [1,6,15,20,15,6,1]/64); the N-d filter is
their outer product, applied per channel (depthwise) and separably, one axis at a time.

Padding and output length (as the reference `antialiased_cnns.BlurPool`, whose outputs
for every filter size, the three pad modes and strides 2-3 are stored as test fixtures):
each spatial dim is padded by `(f - 1) // 2` below and `f // 2` (= ceil((f - 1) / 2))
above, then the filter is applied with stride `s`, so
`out = floor((L - 1) / s) + 1 = ceil(L / s)`.
`pad_mode`: "reflect" (mirror without repeating the edge, torch `ReflectionPad`; needs
padding < L), "replicate" (repeat the edge) or "zero".

Spatial dims: blur ops take no window, so their spatial rank `n` is fixed by, in order,
the `spatial_dims` keyword, else the length of a tuple `filter_size`/`stride`, else
`x.ndim - 2` (one batch dim first, features last) -- the same rule as an int
`window_shape` in `geometry.py`. Everything before the spatial dims is batch.

Inputs must be floating point (blurring averages); sums are computed in float32 (or the
input's precision if wider) and cast back to the input dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from poolnets.pooling.geometry import (
    IntOrSeq,
    Padding,
    as_array,
    normalize_tuple,
    num_spatial_dims,
    window_geometry,
)
from poolnets.pooling.windowed import avg_pool, max_pool

MAX_FILTER_SIZE = 7
_JNP_PAD_MODE = {"reflect": "reflect", "replicate": "edge", "zero": "constant"}


def binomial_filter(filter_size: int) -> np.ndarray:
    """1-D binomial low-pass filter `C(f-1, k) / 2**(f-1)`, k = 0..f-1 (float64, sums to 1)."""
    (size,) = normalize_tuple(filter_size, 1, "filter_size")
    if size > MAX_FILTER_SIZE:
        raise ValueError(f"filter_size must be in 1..{MAX_FILTER_SIZE}; got filter_size={size}")
    row = np.array([math.comb(size - 1, k) for k in range(size)], dtype=np.float64)
    return row / row.sum()


def blur_kernel(filter_size: IntOrSeq, spatial_dims: int | None = None) -> np.ndarray:
    """N-d blur filter: outer product of `binomial_filter` per spatial dim, shape `(*f,)`."""
    if spatial_dims is None:
        spatial_dims = len(filter_size) if isinstance(filter_size, Sequence) else 2
    sizes = _filter_sizes(filter_size, spatial_dims)
    kernel = np.ones((), dtype=np.float64)
    for size in sizes:
        kernel = np.multiply.outer(kernel, binomial_filter(size))
    return kernel


def spatial_rank(x_ndim: int, spatial_dims: int | None, **tuple_args) -> int:
    """Number of spatial dims for ops without a window (rule in the module docstring)."""
    if spatial_dims is not None:
        if isinstance(spatial_dims, bool) or not isinstance(spatial_dims, int | np.integer):
            raise TypeError(
                f"spatial_dims must be an int or None; got spatial_dims={spatial_dims!r}"
            )
        n = int(spatial_dims)
        if n < 1:
            raise ValueError(f"spatial_dims must be >= 1; got spatial_dims={spatial_dims!r}")
    else:
        lengths = {name: len(v) for name, v in tuple_args.items()
                   if isinstance(v, Sequence) and not isinstance(v, str)}
        if len(set(lengths.values())) > 1:
            raise ValueError(
                "tuple arguments must agree on the number of spatial dims; got "
                + ", ".join(f"{k}={v!r}" for k, v in tuple_args.items())
            )
        if lengths:
            n = next(iter(lengths.values()))
        else:
            if x_ndim < 3:
                raise ValueError(
                    f"without spatial_dims the spatial rank is x.ndim - 2 and needs x.ndim >= 3; "
                    f"got x.ndim={x_ndim}. Pass spatial_dims for unbatched inputs."
                )
            n = x_ndim - 2
    if x_ndim < n + 1:
        raise ValueError(
            f"x must have at least {n + 1} dims (*batch, {n} spatial, features); "
            f"got x.ndim={x_ndim}"
        )
    return n


def check_float(x: jax.Array, op: str) -> jax.Array:
    """`x` as an array; TypeError for non-floating inputs of averaging ops."""
    x = as_array(x, op)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{op} averages and needs a floating-point x; got x.dtype={x.dtype}")
    return x


def compute_dtype(dtype) -> jnp.dtype:
    """float32, or the input dtype if it is wider (float64 under x64)."""
    return jnp.promote_types(dtype, jnp.float32)


def _filter_sizes(filter_size: IntOrSeq, n: int) -> tuple[int, ...]:
    sizes = normalize_tuple(filter_size, n, "filter_size")
    if any(f > MAX_FILTER_SIZE for f in sizes):
        raise ValueError(
            f"filter_size must be in 1..{MAX_FILTER_SIZE}; got filter_size={filter_size!r}"
        )
    return sizes


def _check_pad_mode(pad_mode: str) -> str:
    if not isinstance(pad_mode, str) or pad_mode not in _JNP_PAD_MODE:
        raise ValueError(
            f"pad_mode must be one of {sorted(_JNP_PAD_MODE)}; got pad_mode={pad_mode!r}"
        )
    return _JNP_PAD_MODE[pad_mode]


def _blur_subsample(x: jax.Array, sizes, strides, mode: str) -> jax.Array:
    """Pad, blur and subsample the trailing spatial dims of `x: (*batch, *spatial, C)`."""
    n = len(sizes)
    batch_shape, spatial, channels = x.shape[: x.ndim - n - 1], x.shape[-n - 1 : -1], x.shape[-1]
    y = x.reshape((-1, *spatial, channels)).astype(compute_dtype(x.dtype))
    dims = lax.ConvDimensionNumbers(
        lhs_spec=(0, n + 1, *range(1, n + 1)),
        rhs_spec=(n + 1, n, *range(n)),
        out_spec=(0, n + 1, *range(1, n + 1)),
    )
    # Separable: blurring one axis commutes with padding the others, so axis-by-axis
    # equals padding everything then applying the outer-product filter.
    for axis, (size, stride) in enumerate(zip(sizes, strides, strict=True)):
        pad = [(0, 0)] * (n + 2)
        pad[axis + 1] = ((size - 1) // 2, size // 2)
        y = jnp.pad(y, pad, mode=mode)
        shape = [1] * n
        shape[axis] = size
        taps = jnp.asarray(binomial_filter(size), y.dtype).reshape((*shape, 1, 1))
        window_strides = [1] * n
        window_strides[axis] = stride
        y = lax.conv_general_dilated(
            y,
            jnp.broadcast_to(taps, (*shape, 1, channels)),
            window_strides=window_strides,
            padding="VALID",
            dimension_numbers=dims,
            feature_group_count=channels,
            precision=lax.Precision.HIGHEST,
        )
    return y.reshape((*batch_shape, *y.shape[1:])).astype(x.dtype)


def _validated_blur(x, filter_size, stride, pad_mode, n, op):
    sizes = _filter_sizes(filter_size, n)
    strides = normalize_tuple(stride, n, "stride")
    mode = _check_pad_mode(pad_mode)
    if pad_mode == "reflect":
        spatial = x.shape[-n - 1 : -1]
        for length, size in zip(spatial, sizes, strict=True):
            if size // 2 >= length:
                raise ValueError(
                    f"{op}: pad_mode='reflect' needs padding {size // 2} < spatial length "
                    f"{length} (filter_size={filter_size!r}, spatial shape {spatial}); use "
                    "pad_mode='replicate' or 'zero' or a smaller filter_size"
                )
    return sizes, strides, mode


def blur_pool(
    x: jax.Array,
    *,
    filter_size: IntOrSeq = 3,
    stride: IntOrSeq = 2,
    pad_mode: str = "reflect",
    spatial_dims: int | None = None,
) -> jax.Array:
    """Depthwise binomial blur then subsample (Zhang 2019, BlurPool).

    Args:
      x: `(*batch, *spatial, C)`, floating point.
      filter_size: 1..7 per spatial dim (1 = plain subsampling).
      stride: subsampling factor per spatial dim.
      pad_mode: "reflect", "replicate" or "zero".
      spatial_dims: spatial rank (see module docstring for the default).

    Returns:
      `(*batch, *out, C)` with `out[i] = ceil(L[i] / stride[i])`:
      `y[o] = sum_t k[t] * xpad[o * s + t]`, `k` the outer-product binomial filter and
      `xpad` the input padded by `((f-1)//2, f//2)` with `pad_mode`.
    """
    x = check_float(x, "blur_pool")
    n = spatial_rank(x.ndim, spatial_dims, filter_size=filter_size, stride=stride)
    sizes, strides, mode = _validated_blur(x, filter_size, stride, pad_mode, n, "blur_pool")
    return _blur_subsample(x, sizes, strides, mode)


def max_blur_pool(
    x: jax.Array,
    window_shape: IntOrSeq = 2,
    *,
    filter_size: IntOrSeq = 3,
    stride: IntOrSeq = 2,
    padding: Padding = 0,
    pad_mode: str = "reflect",
) -> jax.Array:
    """MaxBlurPool (Zhang 2019): `max_pool` over `window_shape` with stride 1, then
    `blur_pool`.

    `padding` (any form of `geometry.py`, -inf padded, at most half the window as in
    PyTorch) belongs to the max stage. The spatial
    rank follows `window_shape` (int: `x.ndim - 2`). Output length per dim
    `ceil((L + lo + hi - k + 1) / s)`, which equals `floor((L + lo + hi - k) / s) + 1`, the
    length of the strided max pool it replaces (e.g. `MaxPool(2, 2)` -> `L // 2`).
    """
    x = check_float(x, "max_blur_pool")
    n = num_spatial_dims(x.ndim, window_shape)
    dense = max_pool(x, window_shape, 1, padding)
    sizes, strides, mode = _validated_blur(dense, filter_size, stride, pad_mode, n, "max_blur_pool")
    return _blur_subsample(dense, sizes, strides, mode)


def avg_blur_pool(
    x: jax.Array,
    window_shape: IntOrSeq = 2,
    *,
    filter_size: IntOrSeq = 3,
    stride: IntOrSeq = 2,
    padding: Padding = 0,
    pad_mode: str = "reflect",
) -> jax.Array:
    """Average over `window_shape` with stride 1 (zero padding counted, as torch's default
    `count_include_pad=True`), then `blur_pool`. Output length as `max_blur_pool`.

    A box of size 2 convolved with the binomial filter of size f is the binomial filter of
    size f + 1, so away from the borders and for odd f, `avg_blur_pool(x, 2, filter_size=f)`
    equals `blur_pool(x, filter_size=f + 1)` (both pad `(f - 1) // 2` below).
    """
    x = check_float(x, "avg_blur_pool")
    n = num_spatial_dims(x.ndim, window_shape)
    dense = avg_pool(x, window_shape, 1, padding)
    sizes, strides, mode = _validated_blur(dense, filter_size, stride, pad_mode, n, "avg_blur_pool")
    return _blur_subsample(dense, sizes, strides, mode)


def conv_blur_pool(
    x: jax.Array,
    kernel: jax.Array,
    bias: jax.Array | None = None,
    *,
    padding: Padding = "SAME",
    activation=None,
    filter_size: IntOrSeq = 3,
    stride: IntOrSeq = 2,
    pad_mode: str = "reflect",
) -> jax.Array:
    """ConvBlurPool (Zhang 2019): convolution with stride 1, optional activation, `blur_pool`.

    Args:
      x: `(*batch, *spatial, C_in)` floating point.
      kernel: `(*window, C_in, C_out)`; its rank fixes the spatial rank `n = kernel.ndim - 2`.
      bias: optional `(C_out,)`.
      padding: of the convolution, any form of `geometry.py` ("SAME" keeps the size).
      activation: applied between the convolution and the blur (Zhang uses ReLU), or None.

    Returns `(*batch, *ceil(L' / stride), C_out)`, `L'` the stride-1 convolution's length.
    """
    x = check_float(x, "conv_blur_pool")
    kernel = as_array(kernel, "conv_blur_pool", "kernel")
    n = kernel.ndim - 2
    if n < 1 or x.ndim < n + 1 or kernel.shape[-2] != x.shape[-1]:
        raise ValueError(
            f"kernel must have shape (*window, C_in, C_out) with C_in = x.shape[-1]; got "
            f"kernel.shape={kernel.shape}, x.shape={x.shape}"
        )
    if bias is not None and jnp.shape(bias) != (kernel.shape[-1],):
        raise ValueError(f"bias must have shape ({kernel.shape[-1]},); got {jnp.shape(bias)}")
    geom = window_geometry(x.shape, tuple(kernel.shape[:n]), 1, padding)
    batch_shape = x.shape[: x.ndim - n - 1]
    flat = x.reshape((-1, *x.shape[-n - 1 :]))
    dims = lax.ConvDimensionNumbers(
        lhs_spec=(0, n + 1, *range(1, n + 1)),
        rhs_spec=(n + 1, n, *range(n)),
        out_spec=(0, n + 1, *range(1, n + 1)),
    )
    y = lax.conv_general_dilated(
        flat, kernel.astype(x.dtype), (1,) * n, geom.requested_padding, dimension_numbers=dims,
        preferred_element_type=compute_dtype(x.dtype),
    )
    if bias is not None:
        y = y + jnp.asarray(bias, y.dtype)
    if activation is not None:
        y = activation(y)
    y = y.astype(x.dtype).reshape((*batch_shape, *y.shape[1:]))
    sizes, strides, mode = _validated_blur(y, filter_size, stride, pad_mode, n, "conv_blur_pool")
    return _blur_subsample(y, sizes, strides, mode)
