"""LeNet-5 at 1.25x width (ReLU, max pool, 96,293 parameters) on Fashion-MNIST, 28x28
zero-padded to 32x32.

Command:   nice -n 10 .venv/bin/python train.py --config configs/fashion_lenet.py \
               --workdir /tmp/fm/w0 --config.seed=0 --config.data_dir=/tmp/fm/data
           (seeds 1 and 2 likewise; /tmp/fm/data held fashion_mnist prepared from the
           Debian package's files, as the first run prepares it in any data_dir)
Hardware:  2-core x86-64 CPU (AMD EPYC), JAX CPU backend, no accelerator.
Runtime:   275-277 s of CPU time (user + system) per run for the whole process (imports,
           data read, compilation, 7,020 steps, 15 evaluations): under 5 minutes of CPU. Wall
           time on an idle machine was not measured: here it was 19 min, the three seeds
           running at once beside other jobs (load average 8-12). /usr/bin/time -v, 2026-12-06.
Result:    test_accuracy 0.9186 / 0.9205 / 0.9221 for seeds 0 / 1 / 2: mean 0.9204, sample
           standard deviation 0.0018. Below the 0.925 the issue asks for. At the published
           width (--config.model.width=1.0, 61,706 parameters) the same recipe gave 0.9170 /
           0.9131 / 0.9173 (mean 0.9158, sd 0.0023) in 231-232 s of CPU; other settings tried
           at width 1.0 are in docs/fashion_mnist.md.
"""

import ml_collections

from poolnets.training.defaults import base_config


def get_config() -> ml_collections.ConfigDict:
    config = base_config()  # every field and its default: poolnets/training/defaults.py
    config.model.name = "lenet5"
    config.model.width = 1.25  # every hidden width x1.25: 96,293 parameters, under 100K
    config.dataset = "fashion_mnist"  # prepared from the Debian package's files on first use
    config.batch_size = 128
    config.eval_batch_size = 1000
    config.num_epochs = 15
    config.optimizer = "sgd"  # Nesterov momentum 0.9, cosine schedule, 1 warmup epoch
    config.learning_rate = 0.05
    config.weight_decay = 5e-4
    config.label_smoothing = 0.1
    # Fashion-MNIST's standard augmentation is a random crop after padding plus a horizontal
    # flip (poolnets.data.augment: max_shift, flip). LeNet-5 is too small for the full dose:
    # with AdamW, +-2 px and flips left it underfitting (last training batches 0.90-0.92,
    # test 0.9046 in 15 epochs), so the recipe keeps a +-1 px shift and no flip.
    config.augment.max_shift = 1
    config.augment.flip = False
    return config
