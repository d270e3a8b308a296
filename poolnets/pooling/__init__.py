"""Pure-functional pooling primitives (no Flax), channels-last `(*batch, *spatial, features)`.

The public surface is documented in `shared/API.md`; each function's docstring gives
its output-shape formula.
"""
from poolnets.pooling.adaptive import adaptive_avg_pool as adaptive_avg_pool
from poolnets.pooling.adaptive import adaptive_max_pool as adaptive_max_pool
from poolnets.pooling.global_pools import global_avg_pool as global_avg_pool
from poolnets.pooling.global_pools import global_max_pool as global_max_pool
from poolnets.pooling.global_pools import spatial_pyramid_pool as spatial_pyramid_pool
