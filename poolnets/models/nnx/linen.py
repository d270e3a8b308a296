"""`create_linen`: a zoo model as a `flax.linen.Module`, made from the NNX model by Flax's
bridge (`flax.nnx.bridge.ToLinen`), so Linen code keeps `init`/`apply`:

    module = create_linen("resnet20", num_classes=10)
    variables = module.init(key, x, train=False)          # {"params", "batch_stats"}
    logits, updates = module.apply(variables, x, train=True, mutable=["batch_stats"],
                                   rngs={"dropout": k1, "pool": k2})

The variables are the NNX model's `nnx.Param`s ("params") and `nnx.BatchStat`s
("batch_stats") under its attribute paths, so they load into `create(name, ...)` as they
are (`nnx.update`) and back.

How the bridge treats randomness: `ToLinen` rebuilds the NNX model on every call and hands
it an `nnx.Rngs` of Linen's rng streams. At `init` the model is built concretely (its
initialisers draw from "params"); at `apply` it is built abstractly (nothing computed),
filled with the given variables, and its "dropout" and "pool" streams are reseeded from
Linen's keys, so dropout and the random pools draw fresh values on every `apply`, as Linen
layers do (the masks differ from the 0.1 Linen zoo's, which derived them per layer path).
A stream Linen was not given gets a fixed key only where nothing draws from it: `train=True`
on a model with dropout or a random pool and no such rng is a ValueError naming it.
"""

from __future__ import annotations

from typing import Any

import jax
from flax import linen, nnx
from flax.core import FrozenDict
from flax.nnx import bridge

from poolnets.models.nnx import catalog as zoo
from poolnets.models.nnx.contract import ZooModel
from poolnets.nnx._base import Random

STREAMS = ("dropout", "pool")  # the streams a model draws from in training


def _streams_used(model: nnx.Module) -> set[str]:
    used = set()
    for _, node in nnx.iter_graph(model):
        if isinstance(node, nnx.Dropout) and node.rate > 0:
            used.add("dropout")
        elif isinstance(node, Random):
            used.add("pool")
    return used


def _build(*, model: str, num_classes: int, options: FrozenDict, train: bool,
           given: tuple[str, ...], initializing: bool, rngs: nnx.Rngs) -> ZooModel:
    """The NNX model for one Linen call (the bridge's `nnx_class`)."""
    keys = {s: rngs[s]() if s in given else 0 for s in STREAMS}
    if initializing:
        net = zoo.create(model, num_classes=num_classes,
                         rngs=nnx.Rngs(params=rngs.params(), **keys), **options)
    else:  # the bridge overwrites every variable with Linen's: build nothing concrete
        # Named streams, so that each layer's stream keeps its tag for the reseed.
        net = nnx.eval_shape(lambda: zoo.create(
            model, num_classes=num_classes, rngs=nnx.Rngs(0, **dict.fromkeys(STREAMS, 0)),
            **options))
        tags = {n.key.tag for _, n in nnx.iter_graph(net) if isinstance(n, nnx.RngStream)}
        nnx.reseed(net, **{tag: keys.get(tag, 0) for tag in tags})
    missing = sorted(_streams_used(net) - set(given)) if train else []
    if missing:
        raise ValueError(
            f"{model}: apply(..., train=True) draws from the {missing} rng stream(s); pass "
            f"rngs={{{', '.join(f'{s!r}: key' for s in missing)}}}")
    return net


class LinenModel(linen.Module):
    """Zoo model `model` as a Linen module (made by `create_linen`): `__call__(x, train=False)`
    gives logits `(N, num_classes)` for `x: (N, *spatial, C)`; `forward_features` and
    `forward_intermediates` are the NNX model's (`module.apply(variables, x,
    method="forward_intermediates")`)."""

    model: str
    num_classes: int
    options: FrozenDict = FrozenDict()

    @linen.compact
    def run(self, x: jax.Array, train: bool, method: str, **kwargs: Any) -> Any:
        """NNX model method `method` on `x` (every public method goes through here)."""
        given = tuple(s for s in STREAMS if self.has_rng(s))
        net = bridge.ToLinen(_build, kwargs=FrozenDict(
            model=self.model, num_classes=self.num_classes, options=dict(self.options),
            train=bool(train), given=given, initializing=self.is_initializing()))
        linen.share_scope(self, net)  # the NNX model's variables at the top level
        return net(x, train=train, nnx_method=method, **kwargs)

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        return self.run(x, train, "__call__")

    def forward_features(self, x: jax.Array, train: bool = False) -> jax.Array:
        """The last feature map, before the head."""
        return self.run(x, train, "forward_features")

    def forward_intermediates(self, x: jax.Array, indices: Any = None, train: bool = False
                              ) -> list[jax.Array]:
        """The feature maps of the NNX model's `feature_info` entries picked by `indices`."""
        return self.run(x, train, "forward_intermediates", indices=indices)


def create_linen(name: str, *, num_classes: int, **options: Any) -> LinenModel:
    """Model `name` as a `flax.linen.Module`, the same network as `create(name, ...)` with
    the same options (rngs aside: Linen's are given to init/apply).

    `module.init(rngs, x, train=False)` returns {"params"[, "batch_stats"]}, the NNX
    model's variables under its attribute paths; `module.apply(variables, x, train=...,
    mutable=["batch_stats"], rngs={"dropout": key, "pool": key})` as with any Linen model.
    Arguments are checked here, before anything is traced.
    """
    if "rngs" in options:
        raise TypeError("create_linen takes no rngs: pass Linen's to init and apply")
    zoo.check_create_args(name, num_classes=num_classes, downsample=options.get("downsample"),
                          head=options.get("head"),
                          overrides={k: v for k, v in options.items()
                                     if k not in zoo.CREATE_ARGS})
    return LinenModel(model=name, num_classes=num_classes, options=FrozenDict(options))
