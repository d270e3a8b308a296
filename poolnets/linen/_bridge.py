"""Linen modules made from the NNX pools of `poolnets.nnx` by Flax's bridge
(`flax.nnx.bridge.ToLinen`): one generated class per NNX class, never a second copy.

Each generated class takes the NNX class's arguments, except `in_features` (read from the
input's last dim when the module is first called) and `rngs` (Linen's own rngs serve).
Calls take `train=False` as Linen modules with dropout do: the random pools are
deterministic unless `train=True`, and then draw from Linen's "pool" stream
(`rngs={"pool": key}`); the other pools ignore it. The NNX module's parameters are the
Linen module's own (shared scope): `{"params": {"p": ...}}`, not nested under the bridge.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, ClassVar

from flax import linen, nnx
from flax.core import FrozenDict
from flax.nnx import bridge

from poolnets.nnx._base import Pool, Random

_MISSING = object()


class Bridged(linen.Module):
    """Base of the generated Linen pools: `args`/`kwargs` are the NNX class's arguments."""

    args: tuple = ()
    kwargs: FrozenDict = FrozenDict()
    nnx_class: ClassVar[type[Pool]]
    in_features_at: ClassVar[str | None] = None  # "first" (positional), "keyword" or None
    takes_rngs: ClassVar[bool] = False

    def nnx_args(self, in_features: int) -> tuple[tuple, dict[str, Any]]:
        """The NNX class's arguments, with `in_features` where it takes it."""
        args, kwargs = tuple(self.args), dict(self.kwargs)
        if self.in_features_at == "first":
            args = (in_features, *args)
        elif self.in_features_at == "keyword":
            kwargs["in_features"] = in_features
        return args, kwargs

    @linen.compact
    def __call__(self, *inputs: Any, train: bool = False, **call_kwargs: Any) -> Any:
        random = issubclass(self.nnx_class, Random)
        # Random pools take no rngs when built: each training call gets a key from Linen's
        # "pool" stream instead, as the zoo's Linen models draw theirs.
        args, kwargs = self.nnx_args(inputs[0].shape[-1])
        child = bridge.ToLinen(self.nnx_class, args=args, kwargs=FrozenDict(kwargs),
                               skip_rng=random or not self.takes_rngs)
        linen.share_scope(self, child)  # the NNX module's variables are this module's
        if random:
            call_kwargs.update(deterministic=not train,
                               rngs=self.make_rng("pool") if train else None)
        return child(*inputs, **call_kwargs)

    @linen.nowrap
    def abstract(self, in_features: int = 1) -> Pool:
        """The NNX module these arguments build (abstract: nothing is computed)."""
        args, kwargs = self.nnx_args(in_features)

        def build() -> Pool:  # rngs are made inside the abstract build, at its trace level
            extra = {"rngs": nnx.Rngs(0)} if self.takes_rngs else {}
            return self.nnx_class(*args, **kwargs, **extra)

        return nnx.eval_shape(build)

    @linen.nowrap
    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Shape returned for an input of `input_shape` (the NNX module's rule)."""
        return self.abstract(int(input_shape[-1])).output_shape(input_shape)

    @linen.nowrap
    def output_spatial(self, input_spatial: Sequence[int]) -> tuple[int, ...]:
        """Spatial size returned for an input of spatial size `input_spatial`."""
        return self.abstract().output_spatial(input_spatial)


def to_linen(nnx_class: type[Pool]) -> type[Bridged]:
    """The Linen class of `nnx_class`: `Cls(*args, **kwargs)` as the NNX class's arguments
    less `in_features` and `rngs`."""
    params = list(inspect.signature(nnx_class.__init__).parameters.values())[1:]
    names = [p.name for p in params]
    at = None
    if "in_features" in names:
        at = "first" if params[0].name == "in_features" and params[0].kind is \
            inspect.Parameter.POSITIONAL_OR_KEYWORD else "keyword"
    cls = type(nnx_class.__name__, (Bridged,), {
        "__module__": "poolnets.linen",
        "__doc__": f"Linen `{nnx_class.__name__}` (from `poolnets.nnx` by the bridge).\n\n"
                   + (nnx_class.__doc__ or ""),
        "nnx_class": nnx_class,
        "in_features_at": at,
        "takes_rngs": "rngs" in names,
    })
    dataclass_init = cls.__init__

    def __init__(self, *args: Any, name: Any = _MISSING, parent: Any = _MISSING,
                 **kwargs: Any) -> None:
        # Linen's clone() passes the fields back as args=/kwargs=; users pass the NNX
        # class's own arguments.
        cloned = set(kwargs) == {"args", "kwargs"} and not args
        if cloned:
            args, kwargs = kwargs["args"], dict(kwargs["kwargs"])
        bad = {"in_features", "rngs"} & set(kwargs)
        if bad:
            raise TypeError(f"poolnets.linen.{nnx_class.__name__} takes no {sorted(bad)}: "
                            "in_features is the input's last dim, rngs are Linen's")
        linen_kwargs = {k: v for k, v in (("name", name), ("parent", parent))
                        if v is not _MISSING}
        dataclass_init(self, args=tuple(args), kwargs=FrozenDict(kwargs), **linen_kwargs)
        if at is None and not cloned:
            # Bad arguments fail here, before anything is traced: the NNX module is built
            # once (no parameters beyond scalars; those without in_features need no rngs).
            # Modules with per-feature parameters can only check theirs at the first call.
            nnx_class(*args, **kwargs)

    cls.__init__ = __init__
    return cls


def is_exported_pool(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, Pool) and value is not Pool


