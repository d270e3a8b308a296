"""Fine-tune torchvision's ImageNet ResNet-18 on Imagenette (10 classes, 224x224), 5 epochs.

Command:   on a machine with internet, fetch torchvision's file once (no torch needed):
               wget https://download.pytorch.org/models/resnet18-f37072fd.pth
           then, offline:
               python train.py --config configs/finetune_resnet18.py \\
                   --config.init_from=/path/to/resnet18-f37072fd.pth --workdir runs/ft_resnet18
           Linear probe (train only the new fc layer):  --config.freeze_backbone=True
           Let BatchNorm statistics adapt to the new data: --config.freeze_batch_stats=False
           init_from may also be a directory written by poolnets.weights.checkpoint.
           save_variables (a conversion saved once); unset, the model starts from scratch.
Hardware:  sized for one GPU with >= 8 GB (batch 64, float32); not run here (the 2-core CPU
           used for development manages a few images per second at 224x224).
Expected:  not run here. The head (fc, 512 -> 10) is freshly initialised; everything else,
           BatchNorm statistics included, comes from the checkpoint, whose logits equal
           torchvision's (tests/models/test_torchvision_weights.py). Imagenette's ImageNet
           mean/std normalisation is the one the checkpoint was trained with.
"""

import ml_collections

from poolnets.training.defaults import base_config


def get_config() -> ml_collections.ConfigDict:
    config = base_config()  # every field and its default: poolnets/training/defaults.py
    config.model.name = "resnet18"
    config.dataset = "imagenette"  # random-resized crop 224 + flip; eval resize 256, centre 224
    config.batch_size = 64
    config.eval_batch_size = 64
    config.num_epochs = 5
    config.optimizer = "sgd"
    config.nesterov = False
    config.learning_rate = 0.01  # small: the backbone starts trained
    config.weight_decay = 1e-4
    config.schedule = "cosine"
    config.warmup_epochs = 0.5

    # Transfer learning (poolnets.models.transfer). config.init_from (a .pth/.safetensors
    # file or a save_variables directory) is set on the command line; unset: from scratch.
    config.freeze_backbone = False  # True: optax updates only the new head
    config.freeze_batch_stats = True  # with init_from: BN uses and keeps the checkpoint's stats
    return config
