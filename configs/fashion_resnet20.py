"""ResNet-20 (269,434 parameters with one input channel) on Fashion-MNIST, 28x28 zero-padded to
32x32: He et al. (2016)'s CIFAR-10 recipe (SGD 0.1, x0.1 at epochs 91 and 136, 182 epochs,
batch 128) with pad-4 random crops and flips.

Command:   python train.py --config configs/fashion_resnet20.py --workdir runs/fashion_resnet20
           (pooling sweep: add --config.model.downsample=<name>)
Hardware:  sized for one GPU (batch 128, float32); not run here. On the 2-core x86-64 CPU
           (AMD EPYC) one epoch (468 steps) costs about 8 minutes of CPU time: 484 s, from
           the user + system time of a 100-step run (129.8 s) minus a 20-step run (47.1 s),
           i.e. 1.03 s per step, at load average 4-9 (a pair under load 10-16 gave 629 s);
           commands in docs/fashion_mnist.md, 2026-12-06. 182 epochs: about 24 CPU-hours.
Expected:  not run here. Zalando's Fashion-MNIST benchmark table lists 0.949 for ResNet-18;
           ResNet-20 with this recipe is expected near it.
"""

import ml_collections

from poolnets.training.defaults import cifar_resnet_config


def get_config() -> ml_collections.ConfigDict:
    config = cifar_resnet_config(20)  # He et al. (2016) CIFAR recipe: SGD 0.1, step decay
    config.dataset = "fashion_mnist"  # 28x28 zero-padded to 32x32, 1 channel
    config.augment.max_shift = 4  # pad-4 random crop, as the CIFAR recipe
    config.augment.flip = True  # every class (garments, shoes, bags) is left-right symmetric
    return config
