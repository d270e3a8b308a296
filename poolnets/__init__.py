"""poolnets: a JAX/Flax functional model zoo about pooling in convolutional networks.

Importing this package never imports TensorFlow: the data pipeline (which uses
tensorflow-datasets) is imported lazily by `poolnets.data`.
"""

__version__ = "0.2.1"
