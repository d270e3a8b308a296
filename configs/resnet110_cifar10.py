"""ResNet-110 on CIFAR-10, He et al. (2016) recipe: SGD 0.1 after warmup, x0.1 at epochs 91 and
136, 182 epochs.

Command:   python train.py --config configs/resnet110_cifar10.py --workdir runs/resnet110_cifar10
           (pooling sweep: add --config.model.downsample=<name>, see
           poolnets.models.downsample_names())
Hardware:  sized for one GPU with >= 16 GB (batch 128, float32); not run here. On the 2-core CPU
           used for development this is impractical (see bench/train_throughput.py for measured
           images/s).
Expected:  published: 93.57% best of 5 runs (6.43% error), mean 93.39% (6.61+-0.16% error), He et
           al. 2016, Table 6; not run here.
"""

import ml_collections

from poolnets.training.defaults import cifar_resnet_config


def get_config() -> ml_collections.ConfigDict:
    config = cifar_resnet_config(110)  # every other field: poolnets/training/defaults.py
    # He et al. warm up ResNet-110 at lr 0.01 until training error < 80% (~400 iterations);
    # a one-epoch linear warmup plays that role here.
    config.warmup_epochs = 1.0
    return config
