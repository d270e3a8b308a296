"""Throughput: lenet5 on synthetic 32x32x1 data (10 classes), batch 256, 30 steps.

Command:   python train.py --config configs/synthetic_lenet5.py --workdir runs/synthetic_lenet5
           (pooling sweep: add --config.model.downsample=<name>, see
           poolnets.models.downsample_names())
Hardware:  sized to run on a CPU: a few steps of synthetic data (random images and labels) to
           measure step throughput; nothing is learned.
Expected:  test accuracy ~ chance (1/10); see bench/train_throughput.py for measured images/s.
"""

import ml_collections

from poolnets.training.defaults import synthetic_config


def get_config() -> ml_collections.ConfigDict:
    config = synthetic_config("lenet5", (32, 32, 1), batch_size=256, num_steps=30)
    return config
