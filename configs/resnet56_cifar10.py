"""ResNet-56 on CIFAR-10, He et al. (2016) recipe: SGD 0.1, x0.1 at epochs 91 and 136, 182 epochs.

Command:   python train.py --config configs/resnet56_cifar10.py --workdir runs/resnet56_cifar10
           (pooling sweep: add --config.model.downsample=<name>, see
           poolnets.models.downsample_names())
Hardware:  sized for one GPU with >= 16 GB (batch 128, float32); not run here. On the 2-core CPU
           used for development this is impractical (see bench/train_throughput.py for measured
           images/s).
Expected:  published: 93.03% test accuracy (6.97% error, He et al. 2016, Table 6); not run here.
"""

import ml_collections

from poolnets.training.defaults import cifar_resnet_config


def get_config() -> ml_collections.ConfigDict:
    config = cifar_resnet_config(56)  # every other field: poolnets/training/defaults.py
    return config
