"""Datasets and input pipeline.

`import poolnets.data` does not import tensorflow_datasets; the TFDS builders
(`poolnets.data.digits`) load only when a dataset is first read. TensorFlow is never needed.
"""

from poolnets.data.pipeline import (
    DATASETS,
    DatasetSpec,
    Split,
    dataset_names,
    default_data_dir,
    digits_to_lenet_input,
    epoch_batches,
    eval_batches,
    get_spec,
    load_split,
    random_shift,
)

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "Split",
    "dataset_names",
    "default_data_dir",
    "digits_to_lenet_input",
    "epoch_batches",
    "eval_batches",
    "get_spec",
    "load_split",
    "random_shift",
]
