"""The report on real images: LeNet-5 on Fashion-MNIST, the digits report's claims, verdict
rules and figures re-measured on 28x28 product photos (zero-padded to 32x32).

    python -m poolnets.report --config poolnets/report/configs/fashion_mnist.py \
        --out report/fashion_mnist

Needs the four Fashion-MNIST IDX files (`apt-get install dataset-fashion-mnist`, or
$POOLNETS_FASHION_MNIST_DIR; docs/fashion_mnist.md); the first run prepares them. Ten
downsamples (the seven core ones, gem, soft, median) x {flatten, avg} heads x 3 seeds, the
PoolStack, train-time shift and texture experiments as in the default sweep. The texture
rows are the default sweep's procedural `textures` set, unchanged: Fashion-MNIST is the
"edges" half of that claim and the data of every other row.

Sized for the project's 2-core CPU (the digits report takes 13 minutes there): a training
subset and a test subset, and short budgets. Measured: 34 variants in 755 s wall (12 min
41 s) on the quiet 2-core x86-64 CPU, load average 0.9 at start, 2026-12-06 (with
--config.max_minutes=60); details and the run under load in docs/report.md.
"""

import ml_collections

from poolnets.report.config import default_config


def get_config() -> ml_collections.ConfigDict:
    c = default_config()
    c.dataset = "fashion_mnist"
    c.downsamples = ("max", "avg", "lp", "strided_conv", "none", "blur", "stochastic", "gem",
                     "soft", "median")
    c.heads = ("flatten", "avg")
    c.seeds = (0, 1, 2)
    c.train_examples = 4000
    c.test_examples = 500
    c.batch_size = 128
    c.num_epochs = 5
    c.head_epochs = (("avg", 10),)
    c.max_minutes = 36.0
    return c
