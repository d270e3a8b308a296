"""All-CNN-C on CIFAR-10 (Springenberg et al. 2015): SGD momentum 0.9, lr 0.05 x0.1 at epochs 200,
250, 300, 350 epochs, wd 0.001.

Command:   python train.py --config configs/allcnn_c_cifar10.py --workdir runs/allcnn_c_cifar10
           (pooling sweep: add --config.model.downsample=<name>, see
           poolnets.models.downsample_names())
Hardware:  sized for one GPU with >= 16 GB (batch 128, float32); not run here. On the 2-core CPU
           used for development this is impractical (see bench/train_throughput.py for measured
           images/s).
Expected:  published: 92.75% test accuracy with augmentation (7.25% error, Springenberg et al.
           2015, Table 3; their augmentation differs: flips + translations of up to 5 px); not run
           here.
"""

import ml_collections

from poolnets.training.defaults import base_config


def get_config() -> ml_collections.ConfigDict:
    config = base_config()  # every field and its default: poolnets/training/defaults.py
    config.model.name = "allcnn_c"
    config.dataset = "cifar10"  # pad-4 random crop + flip, per-channel normalisation
    config.batch_size = 128
    config.eval_batch_size = 500
    config.num_epochs = 350
    config.optimizer = "sgd"
    config.nesterov = False
    config.momentum = 0.9
    config.learning_rate = 0.05
    config.weight_decay = 0.001
    config.schedule = "step"
    config.lr_decay_epochs = (200, 250, 300)
    config.lr_decay_factor = 0.1
    config.warmup_epochs = 0.0
    config.checkpoint_every_steps = 1000
    return config
