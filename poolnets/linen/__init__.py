"""Flax Linen modules for every pool of `poolnets.pooling`, one per `poolnets.nnx` class,
generated from it by Flax's NNX-to-Linen bridge (see `_bridge`): the same names and
arguments, less `in_features` (read from the input) and `rngs` (Linen's serve).

    import poolnets.linen as plinen
    pool = plinen.StochasticPool(2)
    variables = pool.init(key, x)
    y = pool.apply(variables, x, train=True, rngs={"pool": key})  # train=False: deterministic
"""

import poolnets.nnx as _pnnx
from poolnets.linen._bridge import Bridged as Bridged
from poolnets.linen._bridge import is_exported_pool, to_linen

# One Linen class per exported NNX pool class, under the same name.
__all__ = sorted(name for name, value in vars(_pnnx).items() if is_exported_pool(value))
globals().update({name: to_linen(getattr(_pnnx, name)) for name in __all__})
