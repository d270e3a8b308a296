"""The contract every NNX zoo model keeps (the "Models" section of the API): a trunk of
named stages, a head and a classifier, and from them `__call__(x, *, train=None)`,
`forward_features`, `forward_head`, `forward_intermediates`, `feature_info`,
`pretrained_cfg` and `reset_classifier`.

A family lists its stages once (`stages()`: each a name, a channel count and the ops it
applies in order). The forward pass runs those ops; every size rule derives from the same
ops through their `output_spatial` (pool modules: `poolnets.pooling.geometry`), so the
minimum input size, the feature maps' sizes and their reductions are never re-declared.
Input checks read only static shapes and never the batch dim, which may be symbolic.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from poolnets.models.nnx.layers import conv_spatial
from poolnets.nnx._base import Random

Op = Any  # an nnx.Module or a plain function of one array
PROBE = 1 << 10  # input length per dim at which feature reductions are measured
LARGEST = 1 << 12  # minimum-size searches give up beyond this length
FLOAT_DTYPES = ("float32", "bfloat16", "float16", "float64")


@dataclasses.dataclass(frozen=True)
class Stage:
    """One entry of `feature_info`: its ops, applied in order, end at a feature map of
    `channels` channels."""

    name: str
    channels: int
    ops: tuple[Op, ...]


class TrainAware(nnx.Module):
    """A model part called as `part(x, train=...)` (residual blocks)."""


def apply_op(op: Op, x: jax.Array, train: bool | None) -> jax.Array:
    """One op in the mode `train` (None: the modules' own mode, as set by train()/eval())."""
    flag = None if train is None else not train
    if isinstance(op, TrainAware):
        return op(x, train=train)
    if isinstance(op, nnx.BatchNorm):
        return op(x, use_running_average=flag)
    if isinstance(op, nnx.Dropout | Random):
        return op(x, deterministic=flag)
    return op(x)


def run_ops(ops: Sequence[Op], x: jax.Array, train: bool | None) -> jax.Array:
    for op in ops:
        x = apply_op(op, x, train)
    return x


def op_spatial(op: Op, spatial: tuple[int, ...]) -> tuple[int, ...]:
    """Spatial size after `op`; ValueError when the input is too small for it."""
    if isinstance(op, nnx.Conv):
        out = conv_spatial(op, spatial)
    elif hasattr(op, "output_spatial"):
        out = tuple(op.output_spatial(spatial))
    else:  # activations, norms, dropout
        out = spatial
    if min(out, default=1) < 1:
        raise ValueError(f"input spatial size {spatial} gives no output")
    return out


def ops_spatial(ops: Sequence[Op], spatial: tuple[int, ...]) -> tuple[int, ...]:
    for op in ops:
        spatial = op_spatial(op, spatial)
    return spatial


def check_dtype(model: str, name: str, value: Any) -> Any:
    """`value` among `FLOAT_DTYPES`, else a ValueError naming `name` (an integer dtype would
    otherwise fail deep inside Flax)."""
    try:
        ok = np.dtype(value).name in FLOAT_DTYPES
    except TypeError:
        ok = False
    if value is None or not ok:
        raise ValueError(f"{model}: {name} must be a floating dtype, one of "
                         f"{list(FLOAT_DTYPES)}; got {name}={value!r}")
    return value


def check_positive_int(model: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{model}: {name} must be a positive int, got {name}={value!r}")
    return int(value)


def check_width(model: str, width: Any) -> float:
    if isinstance(width, bool) or not isinstance(width, int | float) or not width > 0:
        raise ValueError(f"{model}: width must be a positive number, got width={width!r}")
    return width


def scaled(channels: int, width: float) -> int:
    """Channel count times the width multiplier, at least 1."""
    return max(1, round(channels * width))


def resolve_input_size(model: str, input_size: Any, default: int, spatial_dims: Any
                       ) -> tuple[int, ...]:
    """Spatial input size: an int (every dim) or one int per spatial dim; None: `default`."""
    if spatial_dims not in (1, 2, 3) or isinstance(spatial_dims, bool):
        raise ValueError(f"{model}: spatial_dims must be 1, 2 or 3, got "
                         f"spatial_dims={spatial_dims!r}")
    size = (default,) * spatial_dims if input_size is None else input_size
    if isinstance(size, int | np.integer) and not isinstance(size, bool):
        size = (int(size),) * spatial_dims
    if (not isinstance(size, Sequence) or len(size) != spatial_dims or not all(
            isinstance(s, int | np.integer) and not isinstance(s, bool) and s >= 1
            for s in size)):
        raise ValueError(f"{model}: input_size must be a positive int or {spatial_dims} "
                         f"positive ints (spatial dims only), got input_size={input_size!r}")
    return tuple(int(s) for s in size)


def select_indices(indices: Any, count: int) -> list[int]:
    """forward_intermediates' `indices`: None all, int n the last n, or a sequence of
    entries (negative allowed), as positions in `0..count-1`."""
    if indices is None:
        return list(range(count))
    if isinstance(indices, int | np.integer) and not isinstance(indices, bool):
        if not 1 <= indices <= count:
            raise ValueError(f"indices={indices!r}: an int asks for the last n of the "
                             f"{count} feature maps, n in 1..{count}")
        return list(range(count - int(indices), count))
    if isinstance(indices, Sequence) and not isinstance(indices, str) and all(
            isinstance(i, int | np.integer) and not isinstance(i, bool) for i in indices):
        bad = [i for i in indices if not -count <= i < count]
        if bad:
            raise ValueError(f"indices {bad} out of range for {count} feature maps "
                             f"(valid: {-count}..{count - 1})")
        return [int(i) % count for i in indices]
    raise TypeError(f"indices must be None, an int or a sequence of ints, got {indices!r}")


class ZooModel(nnx.Module):
    """Base of the NNX zoo models. Subclasses build their layers, then call
    `finish_contract`, and define `stages()` and `classifier_ops()` (the ops after the
    head, the last being the final classifier layer `classifier_attr`)."""

    model_name: str = "model"
    classifier_attr: str = "fc"
    classifier_init: Callable | None = None  # the final layer's kernel init (None: Flax's)

    def begin(self, *, num_classes: Any, in_channels: Any, dtype: Any, param_dtype: Any,
              input_size: Any, default_size: int, spatial_dims: Any) -> tuple[int, ...]:
        """Checks the common arguments (before any layer exists) and returns the spatial
        input size."""
        check_positive_int(self.model_name, "num_classes", num_classes)
        check_positive_int(self.model_name, "in_channels", in_channels)
        self.dtype = check_dtype(self.model_name, "dtype", dtype)
        self.param_dtype = check_dtype(self.model_name, "param_dtype", param_dtype)
        return resolve_input_size(self.model_name, input_size, default_size, spatial_dims)

    def finish_contract(self, *, num_classes: int, in_channels: int,
                        input_size: tuple[int, ...], cfg: dict[str, Any]) -> None:
        """Records the contract's facts and puts the model in evaluation mode (as the Linen
        models' `train=False` default; `model.train()` switches)."""
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.input_size = input_size
        self._cfg = tuple(cfg.items())
        self._head_spatial = self.fixed_head_spatial()
        self.eval()

    def fixed_head_spatial(self) -> tuple[int, ...] | None:
        """The final map a head with position-dependent parameters (plain flatten,
        attention) was built for: the one at input_size; None for other heads."""
        fixed = getattr(self.head, "spatial_shape", None)
        if getattr(self.head, "grid", 0) is None:
            fixed = self.final_spatial(self.input_size)
        return None if fixed is None else tuple(fixed)

    # Subclass hooks.
    def stages(self) -> list[Stage]:
        raise NotImplementedError

    def classifier_ops(self) -> list[Op]:
        raise NotImplementedError

    # Geometry, from the stages' ops.
    def final_spatial(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        """The last feature map's spatial size; ValueError naming the minimum input size
        when `spatial` is too small."""
        try:
            return ops_spatial([op for s in self.stages() for op in s.ops], tuple(spatial))
        except ValueError:
            raise ValueError(
                f"{self.model_name}: input spatial size {tuple(spatial)} is too small for its "
                f"downsampling; the minimum is {self.min_input_size(len(spatial))} in every "
                f"spatial dim"
            ) from None

    def min_input_size(self, spatial_dims: int | None = None) -> int:
        """Smallest length (the same in every spatial dim) the stages accept; lengths are
        monotone in the input's, so a bisection finds it. `spatial_dims` defaults to the
        model's (given while it is being built, before `input_size` is set)."""
        ops = [op for s in self.stages() for op in s.ops]
        d = len(self.input_size) if spatial_dims is None else spatial_dims

        def fits(n: int) -> bool:
            try:
                ops_spatial(ops, (n,) * d)
            except ValueError:
                return False
            return True

        lo, hi = 1, LARGEST
        if not fits(hi):
            raise ValueError(f"{self.model_name}: no input length up to {hi} fits")
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if fits(mid) else (mid + 1, hi)
        return lo

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """One dict per stage: name, channels, reduction (the stage's cumulative stride,
        measured on a long input through the stages' own size rules)."""
        info, spatial = [], (PROBE,) * len(self.input_size)
        for stage in self.stages():
            spatial = ops_spatial(stage.ops, spatial)
            info.append(dict(name=stage.name, channels=stage.channels,
                             reduction=round(PROBE / spatial[0])))
        return info

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        return dict(self._cfg, input_size=(*self.input_size, self.in_channels),
                    num_classes=self.num_classes)

    # Checks.
    def check_input(self, x: Any) -> None:
        """Rank, layout, channel count, dtype and size of `x: (N, *spatial, C)`, before any
        tracing."""
        shape, d, c = tuple(jnp.shape(x)), len(self.input_size), self.in_channels
        layout = f"(N, {', '.join('HW' if d == 2 else 'DHW' if d == 3 else 'L')}, C)"
        if len(shape) != d + 2:
            raise ValueError(f"{self.model_name}: input must be channels-last {layout} with "
                             f"{d} spatial dims and C={c}; got shape {shape}")
        if shape[-1] != c:
            hint = (f" (channels-first? transpose to {(shape[0], *shape[2:], shape[1])})"
                    if shape[1] == c else "")
            raise ValueError(f"{self.model_name}: input must be channels-last {layout} with "
                             f"C={c} channels; got shape {shape}{hint}")
        dtype = x.dtype if hasattr(x, "dtype") else jnp.result_type(x)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(f"{self.model_name}: input must be floating point, got dtype "
                            f"{dtype}")
        final = self.final_spatial(shape[1:-1])
        if self._head_spatial is not None and final != self._head_spatial:
            raise ValueError(
                f"{self.model_name}: its {type(self.head).__name__} head was built for "
                f"input_size={self.input_size} (final map {self._head_spatial}); input spatial "
                f"size {shape[1:-1]} gives final map {final}. Build the model with "
                f"input_size={shape[1:-1]}, or use a global head such as head='avg'")

    # The forward contract.
    def __call__(self, x: jax.Array, *, train: bool | None = None) -> jax.Array:
        """Logits `(N, num_classes)` of `x: (N, *spatial, C)`; `train` None follows the
        mode set by `train()`/`eval()` (evaluation after `create`)."""
        return self.forward_head(self.forward_features(x, train=train), train=train)

    def forward_features(self, x: jax.Array, *, train: bool | None = None) -> jax.Array:
        """The last feature map, before the head."""
        self.check_input(x)
        for stage in self.stages():
            x = run_ops(stage.ops, x, train)
        return x

    def forward_head(self, feats: jax.Array, pre_logits: bool = False, *,
                     train: bool | None = None) -> jax.Array:
        """Head and classifier on `forward_features`' map; `pre_logits=True` stops before
        the final classifier layer (with no classifier: the head's output)."""
        x = apply_op(self.head, feats, train)
        ops = self.classifier_ops()
        return run_ops(ops[:-1] if pre_logits else ops, x, train)

    def forward_intermediates(self, x: jax.Array, indices: Any = None, *,
                              train: bool | None = None) -> list[jax.Array]:
        """Feature maps of the `feature_info` entries picked by `indices` (None: all; int
        n: the last n; a sequence: those entries, negative allowed), in that order."""
        stages = self.stages()
        picked = select_indices(indices, len(stages))
        self.check_input(x)
        maps = []
        for stage in stages[: max(picked) + 1]:
            x = run_ops(stage.ops, x, train)
            maps.append(x)
        return [maps[i] for i in picked]

    def reset_classifier(self, num_classes: int, *, rngs: nnx.Rngs | None = None) -> None:
        """A new final classifier layer for `num_classes` classes (fresh weights)."""
        num_classes = check_positive_int(self.model_name, "num_classes", num_classes)
        old = getattr(self, self.classifier_attr)
        setattr(self, self.classifier_attr, self.new_linear(
            old.in_features, num_classes, rngs or nnx.Rngs(0), self.classifier_init))
        self.num_classes = num_classes

    def new_linear(self, fan_in: int, fan_out: int, rngs: nnx.Rngs,
                   kernel_init: Callable | None = None) -> nnx.Linear:
        extra = {} if kernel_init is None else {"kernel_init": kernel_init}
        return nnx.Linear(fan_in, fan_out, dtype=self.dtype, param_dtype=self.param_dtype,
                          rngs=rngs, **extra)


def head_width(head: nnx.Module, features: int, spatial: tuple[int, ...]) -> int:
    """Width of the head's output vector for a final map `spatial` x `features`."""
    return int(head.output_shape((1, *spatial, features))[-1])

