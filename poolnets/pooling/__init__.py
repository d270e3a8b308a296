"""Pure-functional pooling primitives (no Flax), channels-last `(*batch, *spatial, features)`.

The public surface is documented in `shared/API.md`; each function's docstring gives
its output-shape formula.
"""
from poolnets.pooling.adaptive import adaptive_avg_pool as adaptive_avg_pool
from poolnets.pooling.adaptive import adaptive_max_pool as adaptive_max_pool
from poolnets.pooling.blur import avg_blur_pool as avg_blur_pool
from poolnets.pooling.blur import blur_pool as blur_pool
from poolnets.pooling.blur import conv_blur_pool as conv_blur_pool
from poolnets.pooling.blur import max_blur_pool as max_blur_pool
from poolnets.pooling.fractional import fractional_max_pool as fractional_max_pool
from poolnets.pooling.global_pools import global_avg_pool as global_avg_pool
from poolnets.pooling.global_pools import global_max_pool as global_max_pool
from poolnets.pooling.global_pools import spatial_pyramid_pool as spatial_pyramid_pool
from poolnets.pooling.indices import max_pool_with_indices as max_pool_with_indices
from poolnets.pooling.indices import max_unpool as max_unpool
from poolnets.pooling.median import median_pool as median_pool
from poolnets.pooling.mixing import gated_pool as gated_pool
from poolnets.pooling.mixing import mixed_pool as mixed_pool
from poolnets.pooling.mixing import tree_pool as tree_pool
from poolnets.pooling.roi import roi_align as roi_align
from poolnets.pooling.roi import roi_pool as roi_pool
from poolnets.pooling.spectral import spectral_pool as spectral_pool
from poolnets.pooling.spectral import wavelet_pool as wavelet_pool
from poolnets.pooling.stochastic import stochastic_pool as stochastic_pool
from poolnets.pooling.weighted import gem_pool as gem_pool
from poolnets.pooling.weighted import global_gem_pool as global_gem_pool
from poolnets.pooling.weighted import global_lse_pool as global_lse_pool
from poolnets.pooling.weighted import global_soft_pool as global_soft_pool
from poolnets.pooling.weighted import lip_pool as lip_pool
from poolnets.pooling.weighted import lse_pool as lse_pool
from poolnets.pooling.weighted import soft_pool as soft_pool
from poolnets.pooling.windowed import avg_pool as avg_pool
from poolnets.pooling.windowed import lp_pool as lp_pool
from poolnets.pooling.windowed import max_pool as max_pool
from poolnets.pooling.windowed import min_pool as min_pool
from poolnets.pooling.windowed import pool as pool
from poolnets.pooling.windowed import sum_pool as sum_pool
