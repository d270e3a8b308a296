"""Throughput: lenet5 on synthetic 32x32x1 data (10 classes), batch 256, 30 steps.

Command:   python train.py --config configs/synthetic_lenet5.py --workdir runs/synthetic_lenet5
           (pooling sweep: add --config.model.downsample=<name>, see
           poolnets.nn.downsample_names())
Hardware:  sized to run on a CPU: a few steps of synthetic data (random images and labels) to
           measure step throughput; nothing is learned.
Expected:  test accuracy ~ chance (1/10); see bench/train_throughput.py for measured images/s.
"""

import ml_collections

from poolnets.training.defaults import base_config


def get_config() -> ml_collections.ConfigDict:
    config = base_config()  # every field and its default: poolnets/training/defaults.py
    config.model.name = "lenet5"
    config.dataset = "synthetic"
    config.synthetic.image_shape = (32, 32, 1)
    config.synthetic.num_classes = 10
    config.synthetic.num_train = 1024
    config.synthetic.num_test = 256
    config.batch_size = 256
    config.eval_batch_size = 256
    config.num_steps = 30
    config.log_every = 5
    config.learning_rate = 0.01
    config.warmup_epochs = 0.0
    config.checkpoint_every_steps = 1000
    return config
