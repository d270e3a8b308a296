"""Flax (linen) modules over `poolnets.pooling`, and the downsample/head registries."""
from poolnets.nn.adaptive import AdaptiveAvgPool as AdaptiveAvgPool
from poolnets.nn.adaptive import AdaptiveMaxPool as AdaptiveMaxPool
from poolnets.nn.adaptive import GlobalPool as GlobalPool
from poolnets.nn.adaptive import SpatialPyramidPool as SpatialPyramidPool
from poolnets.nn.registry import (  # noqa: F401  (model zoo registries, issue 4)
    downsample_names,
    global_pool,
    head_names,
    register_downsample,
    register_head,
    windowed,
)
