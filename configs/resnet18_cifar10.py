"""ResNet-18 (ImageNet architecture: 7x7/2 stem + max pool) on CIFAR-10 at 32x32, cosine schedule,
200 epochs.

Command:   python train.py --config configs/resnet18_cifar10.py --workdir runs/resnet18_cifar10
           (pooling sweep: add --config.model.downsample=<name>, see
           poolnets.models.downsample_names())
Hardware:  sized for one GPU with >= 16 GB (batch 128, float32); not run here. On the 2-core CPU
           used for development this is impractical (see bench/train_throughput.py for measured
           images/s).
Expected:  no published figure for this exact model (the ImageNet stem reduces 32x32 to 1x1 before
           the last stage); not run here.
"""

import ml_collections

from poolnets.training.defaults import base_config


def get_config() -> ml_collections.ConfigDict:
    config = base_config()  # every field and its default: poolnets/training/defaults.py
    config.model.name = "resnet18"
    config.dataset = "cifar10"  # pad-4 random crop + flip, per-channel normalisation
    config.batch_size = 128
    config.eval_batch_size = 500
    config.num_epochs = 200
    config.optimizer = "sgd"
    config.nesterov = False
    config.momentum = 0.9
    config.learning_rate = 0.1
    config.weight_decay = 0.0005
    config.schedule = "cosine"
    config.warmup_epochs = 1.0
    config.checkpoint_every_steps = 1000
    return config
