"""Argument normalisation and output-shape rules for windowed pools, written once.

Every windowed op in `poolnets.pooling` (and the research pools built on it) calls
`window_geometry` first. It validates the arguments in plain Python, before any tracing,
and returns a `WindowGeometry` holding normalised per-dimension tuples, explicit
`(low, high)` padding pairs (including the ceil-mode overhang) and the output shape.

Conventions (see `shared/API.md`):

* Arrays are channels-last `(*batch, *spatial, features)`; the number of spatial dims
  `n` is `len(window_shape)`. An **int** `window_shape` means "the same size on every
  spatial dim" and fixes `n = x.ndim - 2`, i.e. exactly one batch dim (first) and one
  feature dim (last). Pass a tuple for unbatched or multi-batch inputs.
* `strides`, `dilation`: an int or one entry per spatial dim; `strides=None` means
  `strides = window_shape`.
* `padding`: `'VALID'`, `'SAME'` (XLA/TF rule: output `ceil(L / s)`, total padding
  `max((out - 1) * s + k_eff - L, 0)` split with the extra element at the end), an int
  or tuple of ints (symmetric, PyTorch style) or a sequence of `(low, high)` pairs.

Output length per spatial dim, with effective window `k_eff = d * (k - 1) + 1`:

    floor mode: out = floor((L + lo + hi - k_eff) / s) + 1
    ceil mode:  out = ceil((L + lo + hi - k_eff) / s) + 1, minus one if the last window
                would start at or beyond L + lo (PyTorch: it must start inside the input
                or the left padding).

In ceil mode the last window may run past the high padding; `WindowGeometry.padding`
adds that overhang to the high side (and trims high padding that only a dropped window
would reach), so `lax.reduce_window` with it yields exactly `output_shape`, while
`WindowGeometry.requested_padding` keeps the user's padding (averaging divisors use it).
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

IntOrSeq = int | Sequence[int]
Padding = str | int | Sequence[int] | Sequence[tuple[int, int]]


@dataclasses.dataclass(frozen=True)
class WindowGeometry:
    """Normalised geometry of a windowed reduction over the trailing spatial dims.

    All tuples have one entry per spatial dim. `padding` is what to hand to
    `lax.reduce_window` (requested padding with the high side adjusted so the reduction
    yields exactly `output_shape`: plus the ceil-mode overhang, minus padding no window
    reaches).
    """

    input_shape: tuple[int, ...]
    window_shape: tuple[int, ...]
    strides: tuple[int, ...]
    dilation: tuple[int, ...]
    requested_padding: tuple[tuple[int, int], ...]
    padding: tuple[tuple[int, int], ...]
    output_shape: tuple[int, ...]
    num_batch_dims: int

    @property
    def num_spatial(self) -> int:
        return len(self.window_shape)

    @property
    def effective_window(self) -> tuple[int, ...]:
        """`d * (k - 1) + 1` per spatial dim: the span of one dilated window."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.window_shape, self.dilation, strict=True))

    @property
    def spatial_axes(self) -> tuple[int, ...]:
        """Axes of the spatial dims in the full `(*batch, *spatial, features)` array."""
        return tuple(range(self.num_batch_dims, self.num_batch_dims + self.num_spatial))

    def lax_window_args(self) -> dict[str, Any]:
        """Keyword arguments for `lax.reduce_window` on the full array (batch and
        feature dims get window 1, stride 1, no padding)."""
        lead, tail = (1,) * self.num_batch_dims, (1,)
        return {
            "window_dimensions": lead + self.window_shape + tail,
            "window_strides": lead + self.strides + tail,
            "padding": ((0, 0),) * self.num_batch_dims + self.padding + ((0, 0),),
            "window_dilation": lead + self.dilation + tail,
        }

    def window_starts(self, axis: int) -> np.ndarray:
        """Input coordinate of the first tap of every window along spatial `axis`
        (negative inside the low padding), shape `(output_shape[axis],)`."""
        out = self.output_shape[axis]
        return np.arange(out, dtype=np.int64) * self.strides[axis] - self.padding[axis][0]

    def tap_counts(self, axis: int, *, include_padding: bool) -> np.ndarray:
        """Number of window taps per output position along spatial `axis`.

        With `include_padding=True` taps in the requested padding count but taps in the
        ceil-mode overhang do not (PyTorch's avg-pool `pool_size`); with `False` only
        taps on real input elements count. Shape `(output_shape[axis],)`, int64.
        """
        starts = self.window_starts(axis)
        taps = starts[:, None] + self.dilation[axis] * np.arange(self.window_shape[axis])
        length = self.input_shape[axis]
        low, high = self.requested_padding[axis]
        lo_bound, hi_bound = (-low, length + high) if include_padding else (0, length)
        return ((taps >= lo_bound) & (taps < hi_bound)).sum(axis=1)


def as_array(value: Any, op: str, name: str = "x") -> jax.Array:
    """`value` as a JAX array of numbers (bool, integer, float or complex), checked in plain
    Python before any tracing; each op checks the dtypes it supports afterwards.

    Raises `TypeError` naming `op`, the argument `name` and the offending type (None, a
    string, ragged or object sequences, PRNG key arrays) instead of JAX's own error from
    inside `jnp.asarray`.
    """
    array = value
    if not isinstance(value, jax.Array):
        try:
            array = jnp.asarray(value)
        except (TypeError, ValueError):
            array = None
    if array is None or not (jnp.issubdtype(array.dtype, jnp.number)
                             or array.dtype == jnp.bool_):
        kind = type(value).__name__
        if array is not None or hasattr(value, "dtype"):
            kind += f" with dtype {getattr(value, 'dtype', None)}"
        raise TypeError(
            f"{op}: {name} must be an array of numbers (a JAX/NumPy array or a nested "
            f"sequence of numbers); got {name} of type {kind}: {_short_repr(value)}"
        )
    return array


def check_spatial_nonempty(op: str, x_shape: Sequence[Any], num_spatial: int) -> None:
    """ValueError unless each of the `num_spatial` dims before the last of `x_shape` is
    non-empty: a reduction over an empty region has no value (a mean would be 0/0 = NaN),
    and torch's adaptive and global pools reject it too."""
    spatial = tuple(x_shape[len(x_shape) - 1 - num_spatial : -1])
    if any(length == 0 for length in spatial):
        raise ValueError(
            f"{op}: spatial dims of x must be non-empty; got x.shape={tuple(x_shape)} "
            f"(spatial {spatial})"
        )


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _as_int(value: Any, name: str, what: str) -> int:
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must contain ints; got {what}={value!r}")
    return int(value)


def normalize_tuple(value: IntOrSeq, n: int, name: str, *, minimum: int = 1) -> tuple[int, ...]:
    """An int or length-`n` sequence of ints -> tuple of `n` ints, each `>= minimum`.

    Raises `TypeError`/`ValueError` naming `name` and the value.
    """
    if isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
        values = (int(value),) * n
    elif isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != n:
            raise ValueError(
                f"{name} must be an int or have one entry per spatial dim ({n}); got "
                f"{name}={value!r} with {len(value)} entries"
            )
        values = tuple(_as_int(v, name, name) for v in value)
    else:
        raise TypeError(f"{name} must be an int or a sequence of ints; got {name}={value!r}")
    if any(v < minimum for v in values):
        raise ValueError(f"{name} entries must be >= {minimum}; got {name}={value!r}")
    return values


def num_spatial_dims(x_ndim: int, window_shape: IntOrSeq) -> int:
    """Spatial rank implied by `window_shape`: its length, or `x_ndim - 2` for an int."""
    if isinstance(window_shape, int | np.integer) and not isinstance(window_shape, bool):
        if x_ndim < 3:
            raise ValueError(
                f"an int window_shape={window_shape!r} means spatial dims = x.ndim - 2 "
                f"(one batch and one feature dim) and needs x.ndim >= 3; got x.ndim={x_ndim}. "
                "Pass a tuple window_shape for unbatched inputs."
            )
        return x_ndim - 2
    if isinstance(window_shape, Sequence) and not isinstance(window_shape, str):
        if len(window_shape) == 0:
            raise ValueError(f"window_shape must have at least one entry; got {window_shape!r}")
        return len(window_shape)
    raise TypeError(f"window_shape must be an int or a sequence of ints; got {window_shape!r}")


def _same_padding(length: int, eff_window: int, stride: int) -> tuple[int, int]:
    out = -(-length // stride)
    total = max((out - 1) * stride + eff_window - length, 0)
    return total // 2, total - total // 2


def resolve_padding(
    padding: Padding,
    input_shape: Sequence[int],
    effective_window: Sequence[int],
    strides: Sequence[int],
) -> tuple[tuple[int, int], ...]:
    """Any accepted padding form -> one non-negative `(low, high)` pair per spatial dim."""
    n = len(input_shape)
    if isinstance(padding, str):
        mode = padding.upper()
        if mode == "VALID":
            return ((0, 0),) * n
        if mode == "SAME":
            return tuple(map(_same_padding, input_shape, effective_window, strides))
        raise ValueError(f"padding string must be 'VALID' or 'SAME'; got padding={padding!r}")
    if isinstance(padding, int | np.integer) and not isinstance(padding, bool | np.bool_):
        pairs = ((int(padding), int(padding)),) * n
    elif isinstance(padding, Sequence):
        if len(padding) != n:
            raise ValueError(
                f"padding must have one entry per spatial dim ({n}); got padding={padding!r}"
            )
        if all(isinstance(p, Sequence) and not isinstance(p, str) for p in padding):
            if any(len(p) != 2 for p in padding):
                raise ValueError(f"padding pairs must be (low, high); got padding={padding!r}")
            pairs = tuple((_as_int(lo, "padding", "padding"), _as_int(hi, "padding", "padding"))
                          for lo, hi in padding)
        else:
            pairs = tuple((v, v) for v in (_as_int(p, "padding", "padding") for p in padding))
    else:
        raise TypeError(
            "padding must be 'VALID', 'SAME', an int, a tuple of ints or (low, high) pairs; "
            f"got padding={padding!r}"
        )
    if any(v < 0 for pair in pairs for v in pair):
        raise ValueError(f"padding must be non-negative; got padding={padding!r}")
    return pairs


def output_length(
    length: int, eff_window: int, stride: int, low: int, high: int, ceil_mode: bool
) -> int:
    """Output length of one spatial dim (formula in the module docstring)."""
    span = length + low + high - eff_window
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= length + low:
        out -= 1
    return out


def window_geometry(
    x_shape: Sequence[int],
    window_shape: IntOrSeq,
    strides: IntOrSeq | None = None,
    padding: Padding = 0,
    *,
    dilation: IntOrSeq = 1,
    ceil_mode: bool = False,
    max_padding_half_window: bool = False,
) -> WindowGeometry:
    """Validate pooling arguments for an input of shape `x_shape` and normalise them.

    Args:
      x_shape: full input shape `(*batch, *spatial, features)`.
      window_shape, strides, padding, dilation, ceil_mode: as in `shared/API.md`.
      max_padding_half_window: enforce PyTorch's rule that every padding entry is at
        most `floor(k_eff / 2)` (ops PyTorch has: max/min/avg pools and indices).

    Returns:
      A `WindowGeometry`; `output_shape` is the spatial part of the result shape.

    Raises:
      TypeError/ValueError naming the offending argument and value.
    """
    # Only the spatial dims need values: batch dims may be symbolic (jax.export).
    x_shape = tuple(x_shape)
    n = num_spatial_dims(len(x_shape), window_shape)
    if len(x_shape) < n + 1:
        raise ValueError(
            f"x must have at least {n + 1} dims (*batch, {n} spatial, features) for "
            f"window_shape={window_shape!r}; got x.shape={x_shape}"
        )
    if not isinstance(ceil_mode, bool | np.bool_):
        raise TypeError(f"ceil_mode must be a bool; got ceil_mode={ceil_mode!r}")
    window = normalize_tuple(window_shape, n, "window_shape")
    stride = window if strides is None else normalize_tuple(strides, n, "strides")
    dil = normalize_tuple(dilation, n, "dilation")
    spatial = tuple(int(s) for s in x_shape[len(x_shape) - 1 - n : -1])
    if any(s < 1 for s in spatial):
        raise ValueError(f"spatial dims of x must be non-empty; got x.shape={x_shape}")
    eff = tuple(d * (k - 1) + 1 for k, d in zip(window, dil, strict=True))
    requested = resolve_padding(padding, spatial, eff, stride)
    if max_padding_half_window:
        for (lo, hi), e in zip(requested, eff, strict=True):
            if max(lo, hi) > e // 2:
                raise ValueError(
                    f"padding must be at most half the effective window (floor({e}/2)="
                    f"{e // 2}) for this op, as in PyTorch; got padding={padding!r} with "
                    f"window_shape={window_shape!r}, dilation={dilation!r}"
                )
    out = tuple(
        output_length(length, e, s, lo, hi, bool(ceil_mode))
        for length, e, s, (lo, hi) in zip(spatial, eff, stride, requested, strict=True)
    )
    for o, length, e, (lo, hi) in zip(out, spatial, eff, requested, strict=True):
        # In ceil mode PyTorch accepts a window up to stride - 1 larger than the padded
        # input (one overhanging window); otherwise it must fit.
        if o < 1:
            raise ValueError(
                f"window_shape={window_shape!r} (effective size {e} with dilation={dilation!r})"
                f" is larger than the padded input ({length} + {lo} + {hi}) and gives no "
                f"output (ceil_mode={ceil_mode}); x.shape={x_shape}"
            )
    # High padding that makes `lax.reduce_window` produce exactly `out` windows: at least
    # what the last window needs (the ceil-mode overhang), and less than one more stride
    # (a window PyTorch's ceil rule dropped must not come back).
    full = []
    for o, s, e, length, (lo, hi) in zip(out, stride, eff, spatial, requested, strict=True):
        needed = (o - 1) * s + e - (length + lo)
        full.append((lo, min(max(hi, needed), needed + s - 1)))
    return WindowGeometry(
        input_shape=spatial,
        window_shape=window,
        strides=stride,
        dilation=dil,
        requested_padding=requested,
        padding=tuple(full),
        output_shape=out,
        num_batch_dims=len(x_shape) - 1 - n,
    )


def window_size(geometry: WindowGeometry) -> int:
    """Number of taps in one window, `prod(window_shape)`."""
    return math.prod(geometry.window_shape)


def broadcast_per_axis(vectors: Sequence[np.ndarray], combine=operator.mul) -> np.ndarray:
    """Outer combination of per-spatial-axis vectors -> array of shape
    `(*output_shape, 1)` (the trailing 1 broadcasts over features)."""
    result = np.ones((), dtype=np.result_type(*vectors))
    for axis, vec in enumerate(vectors):
        shape = [1] * len(vectors)
        shape[axis] = vec.shape[0]
        result = combine(result, vec.reshape(shape))
    return result[..., None]
