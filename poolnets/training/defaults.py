"""Every training config field with its default and, in the comment on its line, its meaning
(`train.py --help` shows them; tests/training check that no field lacks one). Imports nothing
but ml_collections, so configs/*.py (which start from `base_config()`) load without JAX."""

from __future__ import annotations

import inspect
import re

import ml_collections
from ml_collections import config_dict


def base_config() -> ml_collections.ConfigDict:
    """All fields with their defaults (LeNet-5 on `digits`, as configs/default.py)."""
    c = ml_collections.ConfigDict()
    c.model = ml_collections.ConfigDict()  # the network: poolnets.models.create(name, ...)
    c.model.name = "lenet5"  # see poolnets.models.list_models()
    c.model.downsample = config_dict.placeholder(str)  # None: the model's own default
    c.model.head = config_dict.placeholder(str)  # None: the model's own default
    c.model.width = config_dict.placeholder(float)  # channel multiplier; None: 1.0 (published)
    c.model.spatial_dims = config_dict.placeholder(int)  # None: the data's (2 for images)
    c.model.downsample_blocks = config_dict.placeholder(bool)  # ResNet18-152 pool in blocks too
    c.model.batch_norm = config_dict.placeholder(bool)  # BatchNorm after each conv (lenet5, vgg)
    c.dtype = "float32"  # compute dtype (create's dtype); parameters, optimizer state float32

    c.dataset = "digits"  # see poolnets.data.dataset_names()
    c.num_classes = config_dict.placeholder(int)  # None: from the dataset
    c.data_dir = config_dict.placeholder(str)  # None: $TFDS_DATA_DIR or ~/tensorflow_datasets
    c.synthetic = ml_collections.ConfigDict()  # only read when dataset == "synthetic"
    c.synthetic.image_shape = (32, 32, 3)  # (H, W, C) of the random images
    c.synthetic.num_classes = 10  # labels drawn uniformly from 0..num_classes-1
    c.synthetic.num_train = 1024  # training examples
    c.synthetic.num_test = 256  # test examples

    c.batch_size = 64  # global batch, split over all devices (and hosts)
    c.eval_batch_size = 256  # global; the last test batch is padded and masked
    c.num_epochs = 30  # passes over the training split (unless num_steps is set)
    c.num_steps = config_dict.placeholder(int)  # set: overrides num_epochs

    c.optimizer = "sgd"  # sgd | adamw
    c.learning_rate = 0.05  # peak learning rate, reached at the end of the warmup
    c.momentum = 0.9  # sgd momentum; adamw's b1
    c.nesterov = True  # sgd only
    c.weight_decay = 5e-4  # kernels only (not biases, not BatchNorm scale/offset)
    c.schedule = "cosine"  # cosine | constant | step
    c.warmup_epochs = 1.0  # linear warmup from 0 over this many epochs (fractions allowed)
    c.lr_decay_epochs = config_dict.placeholder(tuple)  # step schedule: epochs of each decay
    c.lr_decay_factor = 0.1  # step schedule: lr multiplier at each of lr_decay_epochs
    c.label_smoothing = 0.0  # in [0, 1): weight of the uniform target in the loss
    c.grad_clip_norm = config_dict.placeholder(float)  # None: no clipping

    c.augment = ml_collections.ConfigDict()  # training-time augmentation
    c.augment.enabled = True  # False: no augmentation, whatever the dataset
    c.augment.max_shift = config_dict.placeholder(int)  # None: the dataset's standard
    c.augment.flip = config_dict.placeholder(bool)  # None: the dataset's standard

    c.init_from = config_dict.placeholder(str)  # pretrained backbone: .pth/.safetensors/dir
    c.freeze_backbone = False  # True: only the classifier head is trained
    c.freeze_batch_stats = False  # with init_from: BatchNorm keeps the pretrained statistics

    c.checkpoint_every_steps = 500  # plus one after the last step; resumed from on restart
    c.keep_checkpoints = 3  # newest checkpoints kept in workdir/checkpoints
    c.seed = 0  # parameter init, batch order and dropout/random-pool draws
    c.log_every = 20  # steps per metrics.jsonl record (train metrics averaged over them)
    c.tensorboard = True  # event files in workdir/tensorboard
    c.curves = True  # workdir/curves.png (train loss, test accuracy) at the end of a run
    c.profile_steps = 0  # >0: profiler trace of that many steps into workdir/profile
    c.prefetch = config_dict.placeholder(int)  # batches placed on device ahead; None: 2, CPU 0
    c.data = ml_collections.ConfigDict()  # the training input pipeline (Grain)
    # On CPU, workers compete with XLA for the cores. A resume needs the same count.
    c.data.workers = 0  # Grain processes reading/decoding train batches; 0: in this process

    c.distributed = ml_collections.ConfigDict()  # multi-host; None: from the environment
    c.distributed.coordinator_address = config_dict.placeholder(str)  # host:port of process 0
    c.distributed.num_processes = config_dict.placeholder(int)  # processes in the run
    c.distributed.process_id = config_dict.placeholder(int)  # this process: 0..num_processes-1
    return c


def field_docs() -> dict[str, str]:
    """Dotted field (or group) name -> its meaning: the comment on its line in `base_config`,
    in the order written there."""
    docs = {}
    for line in inspect.getsource(base_config).splitlines():
        match = re.fullmatch(r"\s*c\.([\w.]+) = .*?  # (.+)", line)
        if match:
            docs[match[1]] = match[2]
    return docs


def synthetic_config(
    model: str,
    image_shape: tuple[int, ...],
    *,
    num_classes: int = 10,
    batch_size: int,
    num_steps: int,
) -> ml_collections.ConfigDict:
    """A throughput run: `num_steps` steps of `model` on random images and labels.

    The synthetic split holds 4 training batches and 1 test batch, enough to time steps.
    """
    config = base_config()
    config.model.name = model
    config.dataset = "synthetic"
    config.synthetic.image_shape = tuple(image_shape)
    config.synthetic.num_classes = num_classes
    config.synthetic.num_train = 4 * batch_size
    config.synthetic.num_test = batch_size
    config.batch_size = batch_size
    config.eval_batch_size = batch_size
    config.num_steps = num_steps
    config.log_every = 5
    config.learning_rate = 0.01
    config.warmup_epochs = 0.0
    config.checkpoint_every_steps = 1000
    return config


def cifar_resnet_config(depth: int) -> ml_collections.ConfigDict:
    """He et al. (2016) CIFAR-10 recipe for resnet<depth>: SGD 0.1, momentum 0.9, weight decay
    1e-4, batch 128, x0.1 at epochs 91 and 136 (32k/48k iterations), 182 epochs."""
    config = base_config()
    config.model.name = f"resnet{depth}"
    config.dataset = "cifar10"  # pad-4 random crop + flip, per-channel normalisation
    config.batch_size = 128
    config.eval_batch_size = 500
    config.num_epochs = 182
    config.optimizer = "sgd"
    config.nesterov = False
    config.momentum = 0.9
    config.learning_rate = 0.1
    config.weight_decay = 0.0001
    config.schedule = "step"
    config.lr_decay_epochs = (91, 136)
    config.lr_decay_factor = 0.1
    config.warmup_epochs = 0.0
    config.checkpoint_every_steps = 1000
    return config
