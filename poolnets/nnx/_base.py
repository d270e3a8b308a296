"""What every NNX pool module shares: argument checks before any tracing, the output-shape
rule taken from `poolnets.pooling.geometry`, the random pools' "pool" stream and
`deterministic` mode, and the channel check of modules with per-feature parameters.

Module attributes are static (hashed by `nnx.jit` and kept in the graph definition), so
every sequence argument is stored as a tuple.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from poolnets.pooling.geometry import IntOrSeq, Padding, WindowGeometry, window_geometry

Shape = tuple[int, ...]

# Arguments are checked against a stand-in input this long on every spatial dim: no window
# can overhang it, so any error names the arguments themselves, never the input size.
PROBE_LENGTH = 1 << 20


def frozen(value: Any) -> Any:
    """Lists and tuples, nested, as tuples (static module attributes must be hashable)."""
    if isinstance(value, list | tuple):
        return tuple(frozen(v) for v in value)
    return value


def rank_hint(*values: Any) -> int:
    """Spatial rank named by the first sequence among `values` (1 when all are ints: an
    int then stands for every spatial dim, whatever their number)."""
    for value in values:
        if isinstance(value, Sequence) and not isinstance(value, str):
            return len(value)
    return 1


def check_shape(name: str, shape: Sequence[int]) -> Shape:
    """A shape as a tuple of non-negative ints, or a TypeError naming it. A dim may be
    symbolic (a traced batch size under `jax.export`); it is kept as it is."""
    if isinstance(shape, str) or not isinstance(shape, Sequence) or not all(
            jax.export.is_symbolic_dim(s)
            or (isinstance(s, int | np.integer) and not isinstance(s, bool) and s >= 0)
            for s in shape):
        raise TypeError(f"{name} must be a sequence of non-negative ints; got {name}={shape!r}")
    return tuple(s if jax.export.is_symbolic_dim(s) else int(s) for s in shape)


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be a bool; got {name}={value!r}")
    return bool(value)


def check_in_features(value: Any, *, optional: bool = False, name: str = "in_features"
                      ) -> int | None:
    """A positive int count of features (None allowed where `optional`)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {name}={value!r}")
    return int(value)


def check_spatial_dims(spatial_dims: Any) -> int | None:
    """None, or a positive int spatial rank."""
    if spatial_dims is not None and (isinstance(spatial_dims, bool)
                                     or not isinstance(spatial_dims, int | np.integer)
                                     or spatial_dims < 1):
        raise ValueError(f"spatial_dims must be a positive int or None; got "
                         f"spatial_dims={spatial_dims!r}")
    return None if spatial_dims is None else int(spatial_dims)


class Pool(nnx.Module):
    """Base of every module of `poolnets.nnx`: reports the shape it returns.

    `output_shape(input_shape)` is the full result shape for an input of `input_shape`
    (batch dims and features included; raises the error the call would raise for an input
    that is too small); `output_spatial(input_spatial)` is its spatial part for one batch
    dim, `()` for a head that returns `(N, D)`.
    """

    in_features: int | None = None  # channels the module was built for (None: any)

    def output_shape(self, input_shape: Sequence[int]) -> Shape:
        raise NotImplementedError

    def output_spatial(self, input_spatial: Sequence[int]) -> Shape:
        spatial = check_shape("input_spatial", input_spatial)
        return self.output_shape((1, *spatial, self.in_features or 1))[1:-1]

    def check_input(self, shape: Sequence[int]) -> None:
        """Input channels must match `in_features` when the module was built with it."""
        if self.in_features is not None and (not shape or shape[-1] != self.in_features):
            raise ValueError(
                f"{type(self).__name__} was built for in_features={self.in_features} channels "
                f"(channels-last input (*batch, *spatial, C)); got input shape {tuple(shape)}"
            )


class Windowed(Pool):
    """Base of the windowed pools: `window_shape`, `strides` (None: = window), `padding`,
    `dilation` and `ceil_mode` as in `poolnets.pooling`, checked when the module is built
    by the same `window_geometry` the function calls. `half_window_padding` is the
    function's rule that padding is at most half the effective window."""

    half_window_padding: bool = True

    def __init__(self, window_shape: IntOrSeq, strides: IntOrSeq | None = None,
                 padding: Padding = 0, *, dilation: IntOrSeq = 1, ceil_mode: bool = False,
                 spatial_dims: int | None = None):
        self.window_shape = frozen(window_shape)
        self.strides = frozen(strides)
        self.padding = frozen(padding)
        self.dilation = frozen(dilation)
        self.ceil_mode = ceil_mode
        n = rank_hint(window_shape, strides, dilation, padding)
        if check_spatial_dims(spatial_dims) is not None:
            if isinstance(window_shape, Sequence) and len(window_shape) != spatial_dims:
                raise ValueError(
                    f"window_shape={window_shape!r} has {len(window_shape)} entries but "
                    f"spatial_dims={spatial_dims}"
                )
            n = spatial_dims
        self.spatial_dims = spatial_dims
        self.geometry((1,) + (PROBE_LENGTH,) * n + (1,))

    def rank(self) -> int | None:
        """Spatial rank fixed when built (tuple window or `spatial_dims`), else None."""
        if isinstance(self.window_shape, tuple):
            return len(self.window_shape)
        return self.spatial_dims

    def geometry(self, x_shape: Sequence[int]) -> WindowGeometry:
        """The `WindowGeometry` of an input of shape `x_shape` (validated)."""
        x_shape = check_shape("input shape", x_shape)
        n = self.rank()
        if n is not None and len(x_shape) < n + 1:
            raise ValueError(
                f"{type(self).__name__} pools {n} spatial dims and needs an input "
                f"(*batch, {n} spatial, C); got shape {x_shape}"
            )
        return window_geometry(x_shape, self.geometry_args()["window_shape"], self.strides,
                               self.padding, dilation=self.dilation, ceil_mode=self.ceil_mode,
                               max_padding_half_window=self.half_window_padding)

    def window(self) -> Shape:
        """The window as one int per spatial dim (parameters are shaped by it)."""
        n = self.rank()
        if n is None:
            raise ValueError(
                f"{type(self).__name__}'s parameters have the window's shape: pass a tuple "
                f"window_shape or spatial_dims=; got window_shape={self.window_shape!r}"
            )
        return tuple(self.geometry_args()["window_shape"])

    def output_shape(self, input_shape: Sequence[int]) -> Shape:
        self.check_input(input_shape)
        geometry = self.geometry(input_shape)
        shape = tuple(input_shape)
        return shape[: geometry.num_batch_dims] + geometry.output_shape + shape[-1:]

    def output_spatial(self, input_spatial: Sequence[int]) -> Shape:
        spatial = check_shape("input_spatial", input_spatial)
        n = self.rank()
        if n is not None and len(spatial) != n:
            raise ValueError(
                f"{type(self).__name__} pools {n} spatial dims; got input_spatial={spatial!r}"
            )
        return self.output_shape((1, *spatial, self.in_features or 1))[1:-1]

    def geometry_args(self) -> dict[str, Any]:
        """`window_shape`, `strides`, `padding` for the pure function."""
        window = self.window_shape
        if self.spatial_dims is not None and not isinstance(window, tuple):
            window = (window,) * self.spatial_dims
        return dict(window_shape=window, strides=self.strides, padding=self.padding)


class Random:
    """Mixin of the random pools, as `nnx.Dropout`: `deterministic=False` (training) draws
    from the "pool" stream of the `rngs` given when built (or to the call), `True`
    (`module.eval()`) gives the pool's deterministic evaluation behaviour."""

    def init_random(self, rngs: nnx.Rngs | nnx.RngStream | None, deterministic: bool) -> None:
        self.deterministic = check_bool("deterministic", deterministic)
        if isinstance(rngs, nnx.Rngs):
            self.rngs = rngs["pool"].fork()
        elif isinstance(rngs, nnx.RngStream):
            self.rngs = rngs.fork()
        elif rngs is None:
            self.rngs = nnx.data(None)
        else:
            raise TypeError(f"rngs must be an nnx.Rngs, an nnx.RngStream or None; got {rngs!r}")

    def key(self, deterministic: bool | None, rngs: Any) -> jax.Array | None:
        """The key for this call, or None when deterministic."""
        if deterministic is None:
            deterministic = self.deterministic
        if deterministic:
            return None
        rngs = self.rngs if rngs is None else rngs
        if rngs is None:
            raise ValueError(
                f"{type(self).__name__} is in training mode (deterministic=False) and has no "
                "'pool' stream: build it with rngs=nnx.Rngs(...), pass rngs= to the call, or "
                "call .eval()"
            )
        if isinstance(rngs, nnx.Rngs):
            return rngs["pool"]()
        if isinstance(rngs, nnx.RngStream):
            return rngs()
        if isinstance(rngs, jax.Array):
            return rngs
        raise TypeError(f"rngs must be an nnx.Rngs, RngStream or key array; got {rngs!r}")

    def set_view(self, deterministic: bool | None = None) -> None:
        """For `nnx.view`: `deterministic=True` gives the evaluation behaviour."""
        if deterministic is not None:
            self.deterministic = deterministic


def abstract_shape(fn: Callable[[jax.Array], jax.Array], input_shape: Sequence[int]) -> Shape:
    """Shape `fn` returns for a float32 input of `input_shape`, from the pure function
    itself evaluated abstractly (no computation): its checks raise as a call would."""
    shape = check_shape("input shape", input_shape)
    return jax.eval_shape(fn, jax.ShapeDtypeStruct(shape, jnp.float32)).shape
