"""Flax (linen) modules over `poolnets.pooling`, and the downsample/head registries."""
