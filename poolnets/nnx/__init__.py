"""Flax NNX modules for every pool of `poolnets.pooling` (import as `poolnets.nnx as pnnx`;
this is not `flax.nnx`).

One class per pool, over the pure function of the same name. Signatures follow one rule:
parameter-free deterministic pools take only their geometry; random pools
(`StochasticPool`, `FractionalMaxPool`, `RandomMixedPool`) take `rngs` (their "pool"
stream) and expose `deterministic`, so `model.eval()` makes them deterministic; pools
with scalar learnable parameters take `rngs=None`; pools with per-feature parameters take
`in_features` and `rngs`. Learnable quantities are `nnx.Param`s. Every module reports the
shape it returns (`output_shape(input_shape)`, `output_spatial(input_spatial)`), from the
same geometry the function uses, and rejects bad arguments when it is built.
"""

from poolnets.nnx._base import Pool as Pool
from poolnets.nnx.adaptive import AdaptiveAvgPool as AdaptiveAvgPool
from poolnets.nnx.adaptive import AdaptiveMaxPool as AdaptiveMaxPool
from poolnets.nnx.attention import AttentionPool as AttentionPool
from poolnets.nnx.attention import MAPHead as MAPHead
from poolnets.nnx.filtering import AvgBlurPool as AvgBlurPool
from poolnets.nnx.filtering import BlurPool as BlurPool
from poolnets.nnx.filtering import ConvBlurPool as ConvBlurPool
from poolnets.nnx.filtering import MaxBlurPool as MaxBlurPool
from poolnets.nnx.filtering import SpectralPool as SpectralPool
from poolnets.nnx.filtering import WaveletPool as WaveletPool
from poolnets.nnx.global_pools import GlobalAvgMaxPool as GlobalAvgMaxPool
from poolnets.nnx.global_pools import GlobalAvgPool as GlobalAvgPool
from poolnets.nnx.global_pools import GlobalCatAvgMaxPool as GlobalCatAvgMaxPool
from poolnets.nnx.global_pools import GlobalMaxPool as GlobalMaxPool
from poolnets.nnx.global_pools import SpatialPyramidPool as SpatialPyramidPool
from poolnets.nnx.mixing import GatedPool as GatedPool
from poolnets.nnx.mixing import MixedPool as MixedPool
from poolnets.nnx.mixing import RandomMixedPool as RandomMixedPool
from poolnets.nnx.mixing import TreePool as TreePool
from poolnets.nnx.random import FractionalMaxPool as FractionalMaxPool
from poolnets.nnx.random import StochasticPool as StochasticPool
from poolnets.nnx.regions import RoIAlign as RoIAlign
from poolnets.nnx.regions import RoIPool as RoIPool
from poolnets.nnx.weighted import GeMPool as GeMPool
from poolnets.nnx.weighted import GlobalGeMPool as GlobalGeMPool
from poolnets.nnx.weighted import GlobalLSEPool as GlobalLSEPool
from poolnets.nnx.weighted import GlobalSoftPool as GlobalSoftPool
from poolnets.nnx.weighted import LIPPool as LIPPool
from poolnets.nnx.weighted import LSEPool as LSEPool
from poolnets.nnx.weighted import MedianPool as MedianPool
from poolnets.nnx.weighted import SoftPool as SoftPool
from poolnets.nnx.windowed import AvgPool as AvgPool
from poolnets.nnx.windowed import LPPool as LPPool
from poolnets.nnx.windowed import MaxPool as MaxPool
from poolnets.nnx.windowed import MaxUnpool as MaxUnpool
from poolnets.nnx.windowed import MinPool as MinPool
from poolnets.nnx.windowed import SumPool as SumPool
