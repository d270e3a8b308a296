"""LeNet-5 (ReLU, max pool) on MNIST, zero-padded 28 -> 32 as in LeCun et al. (1998).

Command:   python train.py --config configs/lenet5_mnist.py --workdir runs/lenet5_mnist
           (pooling sweep: add --config.model.downsample=<name>, see
           poolnets.models.downsample_names())
Hardware:  sized for a CPU or any GPU (60k images x 20 epochs); not run here (no MNIST on this
           machine).
Expected:  published: 99.05% for the original LeNet-5 without distortions (0.95% error, LeCun et
           al. 1998); not run here.
"""

import ml_collections

from poolnets.training.defaults import base_config


def get_config() -> ml_collections.ConfigDict:
    config = base_config()  # every field and its default: poolnets/training/defaults.py
    config.model.name = "lenet5"
    config.dataset = "mnist"
    config.batch_size = 128
    config.eval_batch_size = 1000
    config.num_epochs = 20
    config.learning_rate = 0.05
    config.weight_decay = 5e-4
    config.augment.enabled = False
    return config
