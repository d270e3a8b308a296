"""Throughput: vgg16_bn on synthetic 32x32x3 data (10 classes), batch 64, 10 steps.

Command:   python train.py --config configs/synthetic_vgg16_bn.py --workdir runs/synthetic_vgg16_bn
           (pooling sweep: add --config.model.downsample=<name>, see
           poolnets.models.downsample_names())
Hardware:  sized to run on a CPU: a few steps of synthetic data (random images and labels) to
           measure step throughput; nothing is learned.
Expected:  test accuracy ~ chance (1/10); see bench/train_throughput.py for measured images/s.
"""

import ml_collections

from poolnets.training.defaults import synthetic_config


def get_config() -> ml_collections.ConfigDict:
    config = synthetic_config("vgg16_bn", (32, 32, 3), batch_size=64, num_steps=10)
    config.model.head = "avg"
    return config
