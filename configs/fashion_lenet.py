"""LeNet-5 (ReLU, max pool, 61,706 parameters) on Fashion-MNIST, 28x28 zero-padded to 32x32.

Command:   nice -n 10 .venv/bin/python train.py --config configs/fashion_lenet.py \
               --workdir /tmp/fm/s0 --config.seed=0 --config.data_dir=/tmp/fm/data
           (seeds 1 and 2 likewise; /tmp/fm/data held fashion_mnist prepared from the
           Debian package's files, as the first run prepares it in any data_dir)
Hardware:  2-core x86-64 CPU (AMD EPYC), JAX CPU backend, no accelerator.
Runtime:   231-232 s of CPU time (user + system) per run for the whole process (imports,
           data read, compilation, 7,020 steps, 15 evaluations): under 5 minutes of CPU. Wall
           time on an idle machine was not measured: here it was 26 min, the three seeds
           running at once beside other jobs (load average 8-16). /usr/bin/time -v, 2026-12-06.
Result:    test_accuracy 0.9170 / 0.9131 / 0.9173 for seeds 0 / 1 / 2: mean 0.9158, sample
           standard deviation 0.0023. Below the 0.925 the issue asks for; this setting is the best
           of four 15-epoch seed-0 runs of LeNet-5 (others: no augmentation 0.9155; AdamW 2e-3
           with +-1 px 0.9146; AdamW with +-2 px and flips 0.9046; docs/fashion_mnist.md).
"""

import ml_collections

from poolnets.training.defaults import base_config


def get_config() -> ml_collections.ConfigDict:
    config = base_config()  # every field and its default: poolnets/training/defaults.py
    config.model.name = "lenet5"
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
