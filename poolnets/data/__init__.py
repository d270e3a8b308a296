"""Datasets and input pipeline.

`import poolnets.data` does not import tensorflow_datasets; the TFDS readers
(`poolnets.data.digits`, `poolnets.data.sources`) load only when a dataset is first read.
TensorFlow is never needed.
"""

from poolnets.data.augment import Preprocess, preprocess, random_flip, random_shift
from poolnets.data.pipeline import (
    DATASETS,
    DatasetSpec,
    dataset_names,
    dataset_spec,
    default_data_dir,
    digits_to_lenet_input,
    digits_to_lenet_levels,
    epoch_batches,
    eval_batches,
    get_spec,
    load_split,
    train_batches,
)
from poolnets.data.sources import Split

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "Preprocess",
    "Split",
    "dataset_names",
    "dataset_spec",
    "default_data_dir",
    "digits_to_lenet_input",
    "digits_to_lenet_levels",
    "epoch_batches",
    "eval_batches",
    "get_spec",
    "load_split",
    "preprocess",
    "random_flip",
    "random_shift",
    "train_batches",
]
