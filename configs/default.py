"""LeNet-5 on the bundled `digits` dataset (the default of `python train.py`).

Command:   python train.py --config configs/default.py --workdir runs/default
           (`python train.py` with no arguments runs the same config)
Hardware:  2-core x86-64 CPU, no accelerator.
Runtime:   MEASURED_RUNTIME
Result:    MEASURED_RESULT
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()

    config.model = "lenet5"
    config.downsample = config_dict.placeholder(str)  # None: the model's own default
    config.head = config_dict.placeholder(str)  # None: the model's own default
    config.dtype = "float32"  # compute dtype; parameters stay float32

    config.dataset = "digits"
    config.num_classes = config_dict.placeholder(int)  # None: from the dataset
    config.data_dir = config_dict.placeholder(str)  # None: $TFDS_DATA_DIR or ~/tensorflow_datasets

    config.batch_size = 64  # global batch, split over all devices
    config.eval_batch_size = 256  # global; the last test batch is padded and masked
    config.num_epochs = 30
    config.num_steps = config_dict.placeholder(int)  # set: overrides num_epochs

    config.optimizer = "sgd"  # sgd (Nesterov momentum) | adamw
    config.learning_rate = 0.05
    config.momentum = 0.9
    config.weight_decay = 5e-4
    config.schedule = "cosine"  # cosine | constant
    config.warmup_epochs = 1.0
    config.label_smoothing = 0.0

    config.augment = ml_collections.ConfigDict()
    config.augment.max_shift = 2  # random translation of up to +-2 px (digits: 1 source pixel)

    config.seed = 0
    config.log_every = 20
    return config
