"""LeNet-5 on the bundled `digits` dataset (the default of `python train.py`).

Command:   python train.py --config configs/default.py --workdir runs/default
           (`python train.py` with no arguments runs the same config)
Hardware:  2-core x86-64 CPU (lscpu: Intel Xeon), JAX 0.10.2 CPU backend, no accelerator.
Runtime:   10.3-10.5 s wall, 14.2-14.5 s user CPU for the whole process (imports, data from
           a prepared data_dir, XLA compilation, 660 steps, 30 evaluations, checkpoint),
           three runs on a quiet machine (load average 1.4, no other job), poolnets 0.2.1.
           Measured with /usr/bin/time on 2026-12-07.
Result:    test_accuracy 0.9887 (351/355), test_loss 0.0218, 660 steps, 61,706 params; the
           same in all three runs (summary.json equal except the timing keys). 0.1's Linen
           zoo drew other initial weights for the same seed and reached 0.9944 (353/355).
"""

import ml_collections

from poolnets.training.defaults import base_config


def get_config() -> ml_collections.ConfigDict:
    config = base_config()  # every field and its default: poolnets/training/defaults.py
    config.model.name = "lenet5"
    config.dataset = "digits"
    config.batch_size = 64
    config.num_epochs = 30
    config.learning_rate = 0.05
    config.weight_decay = 5e-4
    config.augment.max_shift = 2  # random translation of up to +-2 px (digits: 1 source pixel)
    return config
