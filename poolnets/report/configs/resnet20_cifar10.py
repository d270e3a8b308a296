"""The report for ResNet-20 on CIFAR-10 (He et al. 2016 recipe, shortened), for an accelerator.

Prepare CIFAR-10 once as array_record (see poolnets.data.sources), then on a GPU/TPU host:

    python -m poolnets.report --config poolnets/report/configs/resnet20_cifar10.py \
        --out report_resnet20_cifar10 --config.data_dir=/path/to/tensorflow_datasets

Every downsample choice replaces the two stride-2 convolutions that open stages 2 and 3
(`poolnets.models.CifarResNet`); the head is the published global average. Seeds are
vmapped in one program (`seed_parallel="vmap"`) and variants run one after another in a
single process (`workers=1`), which suits one accelerator. Not run on the project's CPU:
one ResNet-20 epoch there takes minutes per variant.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.model = "resnet20"
    c.dataset = "cifar10"
    c.downsamples = ("max", "avg", "lp", "strided_conv", "blur", "stochastic", "gem", "soft")
    c.heads = ("avg",)
    c.head_epochs = ()
    c.seeds = (0, 1, 2)
    c.num_epochs = 30
    c.batch_size = 128
    c.optimizer = "sgd"
    c.learning_rate = 0.1
    c.weight_decay = 5e-4
    c.feature_layer = "stage3_block2"  # last residual block: ERF and Grad-CAM read it
    c.shifts = (0, 1, 2, 3, 4, 6, 8)
    c.stages = ()  # the PoolStack experiment is LeNet-scale; run it from the default sweep
    c.augment_downsamples = ("max", "avg", "blur", "strided_conv")
    c.texture_downsamples = ("max", "avg", "blur")
    c.erf_images = 256
    c.gradcam_images = 6
    c.chunk = 1024
    c.workers = 1
    c.seed_parallel = "vmap"
    c.max_minutes = 600.0
    return c
