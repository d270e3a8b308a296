"""ResNet-50 on ImageNet-1k (imagenet2012): SGD, cosine, label smoothing 0.1, bfloat16 compute, 90
epochs.

Command:   python train.py --config configs/resnet50_imagenet.py --workdir runs/resnet50_imagenet
           (pooling sweep: add --config.model.downsample=<name>, see
           poolnets.models.downsample_names())
Hardware:  sized for 8 accelerators with >= 16 GB each (global batch 1024, bfloat16), or several
           hosts (config.distributed); not run here. Prepare the data first: see
           poolnets.data.sources.prepare_hint.
Expected:  reference: torchvision's ResNet-50 IMAGENET1K_V1 weights score 76.13% top-1 (step
           schedule, no smoothing); with cosine + label smoothing ~77% is typical; not run here.
"""

import ml_collections

from poolnets.training.defaults import base_config


def get_config() -> ml_collections.ConfigDict:
    config = base_config()  # every field and its default: poolnets/training/defaults.py
    config.model.name = "resnet50"
    config.dataset = "imagenet2012"  # random-resized crop 224 + flip; eval resize 256, centre 224
    config.batch_size = 1024
    config.eval_batch_size = 1024
    config.num_epochs = 90
    config.optimizer = "sgd"
    config.nesterov = False
    config.learning_rate = 0.4  # 0.1 per 256 images (Goyal et al. 2017 linear scaling)
    config.weight_decay = 1e-4
    config.schedule = "cosine"
    config.warmup_epochs = 5.0
    config.label_smoothing = 0.1
    config.dtype = "bfloat16"
    config.checkpoint_every_steps = 2000
    config.log_every = 100
    return config
