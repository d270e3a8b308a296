"""Flax (linen) modules over `poolnets.pooling`, and the downsample/head registries."""
from poolnets.nn.adaptive import AdaptiveAvgPool as AdaptiveAvgPool
from poolnets.nn.adaptive import AdaptiveMaxPool as AdaptiveMaxPool
from poolnets.nn.adaptive import GlobalPool as GlobalPool
from poolnets.nn.adaptive import SpatialPyramidPool as SpatialPyramidPool
from poolnets.nn.antialias import BlurPool as BlurPool
from poolnets.nn.antialias import ConvBlurPool as ConvBlurPool
from poolnets.nn.antialias import MaxBlurPool as MaxBlurPool
from poolnets.nn.attention_pool import AttentionPool as AttentionPool
from poolnets.nn.attention_pool import AttentionPool2d as AttentionPool2d
from poolnets.nn.attention_pool import MAPHead as MAPHead
from poolnets.nn.pooling import AvgPool as AvgPool
from poolnets.nn.pooling import LPPool as LPPool
from poolnets.nn.pooling import MaxPool as MaxPool
from poolnets.nn.pooling import MinPool as MinPool
from poolnets.nn.registry import (  # noqa: F401  (model zoo registries, issue 4)
    downsample_names,
    global_pool,
    head_names,
    register_downsample,
    register_head,
    windowed,
)
from poolnets.nn.research import FractionalMaxPool as FractionalMaxPool
from poolnets.nn.research import GatedPool as GatedPool
from poolnets.nn.research import GeMPool as GeMPool
from poolnets.nn.research import GlobalGeMPool as GlobalGeMPool
from poolnets.nn.research import LIPPool as LIPPool
from poolnets.nn.research import LSEPool as LSEPool
from poolnets.nn.research import MedianPool as MedianPool
from poolnets.nn.research import MixedPool as MixedPool
from poolnets.nn.research import SoftPool as SoftPool
from poolnets.nn.research import StochasticPool as StochasticPool
from poolnets.nn.research import TreePool as TreePool
from poolnets.nn.spectral import SpectralPool as SpectralPool
from poolnets.nn.spectral import WaveletPool as WaveletPool
