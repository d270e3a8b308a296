"""ResNet-56 on CIFAR-10, He et al. (2016) recipe: SGD 0.1, x0.1 at epochs 91 and 136, 182 epochs.

Command:   python train.py --config configs/resnet56_cifar10.py --workdir runs/resnet56_cifar10
           (pooling sweep: add --config.model.downsample=<name>, see
           poolnets.nn.downsample_names())
Hardware:  sized for one GPU with >= 16 GB (batch 128, float32); not run here. On the 2-core CPU
           used for development this is impractical (see bench/train_throughput.py for measured
           images/s).
Expected:  published: 93.03% test accuracy (6.97% error, He et al. 2016, Table 6); not run here.
"""

import ml_collections

from poolnets.training.defaults import base_config


def get_config() -> ml_collections.ConfigDict:
    config = base_config()  # every field and its default: poolnets/training/defaults.py
    config.model.name = "resnet56"
    config.dataset = "cifar10"  # pad-4 random crop + flip, per-channel normalisation
    config.batch_size = 128
    config.eval_batch_size = 500
    config.num_epochs = 182
    config.optimizer = "sgd"
    config.nesterov = False
    config.momentum = 0.9
    config.learning_rate = 0.1
    config.weight_decay = 0.0001
    config.schedule = "step"
    config.lr_decay_epochs = (91, 136)
    config.lr_decay_factor = 0.1
    config.warmup_epochs = 0.0
    config.checkpoint_every_steps = 1000
    return config
