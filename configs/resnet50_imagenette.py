"""ResNet-50 from scratch on Imagenette (10 ImageNet classes, full-size images), 80 epochs.

Command:   python train.py --config configs/resnet50_imagenette.py --workdir
           runs/resnet50_imagenette
           (pooling sweep: add --config.model.downsample=<name>, see
           poolnets.models.downsample_names())
Hardware:  sized for one GPU with >= 16 GB (batch 64, bfloat16); not run here.
Expected:  no published figure for this torchvision-style ResNet-50 recipe; not run here.
"""

import ml_collections

from poolnets.training.defaults import base_config


def get_config() -> ml_collections.ConfigDict:
    config = base_config()  # every field and its default: poolnets/training/defaults.py
    config.model.name = "resnet50"
    config.dataset = "imagenette"  # random-resized crop 224 + flip; eval resize 256, centre 224
    config.batch_size = 64
    config.eval_batch_size = 64
    config.num_epochs = 80
    config.optimizer = "sgd"
    config.nesterov = False
    config.learning_rate = 0.025  # 0.1 per 256 images (Goyal et al. 2017 linear scaling)
    config.weight_decay = 1e-4
    config.schedule = "cosine"
    config.warmup_epochs = 2.0
    config.label_smoothing = 0.1
    config.dtype = "bfloat16"
    config.checkpoint_every_steps = 1000
    config.log_every = 100
    return config
