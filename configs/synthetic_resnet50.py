"""Throughput: resnet50 on synthetic 224x224x3 data (1000 classes), batch 16, 5 steps.

Command:   python train.py --config configs/synthetic_resnet50.py --workdir runs/synthetic_resnet50
           (pooling sweep: add --config.model.downsample=<name>, see
           poolnets.models.downsample_names())
Hardware:  sized to run on a CPU: a few steps of synthetic data (random images and labels) to
           measure step throughput; nothing is learned.
Expected:  test accuracy ~ chance (1/1000); see bench/train_throughput.py for measured images/s.
"""

import ml_collections

from poolnets.training.defaults import synthetic_config


def get_config() -> ml_collections.ConfigDict:
    config = synthetic_config(
        "resnet50", (224, 224, 3), num_classes=1000, batch_size=16, num_steps=5
    )
    config.synthetic.num_train = 256  # 16 batches: the step loop never reuses an epoch
    return config
