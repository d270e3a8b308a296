"""Throughput: resnet50 on synthetic 224x224x3 data (1000 classes), batch 16, 5 steps.

Command:   python train.py --config configs/synthetic_resnet50.py --workdir runs/synthetic_resnet50
           (pooling sweep: add --config.model.downsample=<name>, see
           poolnets.nn.downsample_names())
Hardware:  sized to run on a CPU: a few steps of synthetic data (random images and labels) to
           measure step throughput; nothing is learned.
Expected:  test accuracy ~ chance (1/1000); see bench/train_throughput.py for measured images/s.
"""

import ml_collections

from poolnets.training.defaults import base_config


def get_config() -> ml_collections.ConfigDict:
    config = base_config()  # every field and its default: poolnets/training/defaults.py
    config.model.name = "resnet50"
    config.dataset = "synthetic"
    config.synthetic.image_shape = (224, 224, 3)
    config.synthetic.num_classes = 1000
    config.synthetic.num_train = 256
    config.synthetic.num_test = 16
    config.batch_size = 16
    config.eval_batch_size = 16
    config.num_steps = 5
    config.log_every = 5
    config.learning_rate = 0.01
    config.warmup_epochs = 0.0
    config.checkpoint_every_steps = 1000
    return config
