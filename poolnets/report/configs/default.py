"""The default sweep of `python -m poolnets.report`: LeNet-5 on the bundled digits, every
downsample x {flatten, avg} head, 3 seeds, the PoolStack, train-time shift and texture
experiments (every field and its default: `poolnets.report.config.default_config`)."""

import ml_collections

from poolnets.report.config import default_config


def get_config() -> ml_collections.ConfigDict:
    return default_config()
