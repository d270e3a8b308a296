"""The report's sweep configuration: defaults, loading a `--config` file, overrides.

A config file is a Python file with `get_config() -> ml_collections.ConfigDict` holding any
of the fields of `default_config()`; missing fields keep their defaults.
"""

from __future__ import annotations

import ast
import importlib.util
import os

import ml_collections

# The downsampling choices the issue names first; the sweep runs them before the others.
CORE_DOWNSAMPLES = ("max", "avg", "lp", "strided_conv", "none", "blur", "stochastic")


def default_config() -> ml_collections.ConfigDict:
    """LeNet-5 on the bundled digits: every downsample x {flatten, avg} heads, 3 seeds."""
    c = ml_collections.ConfigDict()
    c.model = "lenet5"
    c.dataset = "digits"
    c.data_dir = ml_collections.config_dict.placeholder(str)
    c.downsamples = ("all",)  # ("all",): core first, then every other registered name
    c.heads = ("flatten", "avg")
    c.seeds = (0, 1, 2)
    c.num_epochs = 5
    # Per-head epochs (pairs head -> epochs; other heads use num_epochs). A global-average
    # head reads 16 averaged maps in LeNet-5 and learns far more slowly: avg/avg reached
    # 0.59 at 5 epochs, 0.92-0.93 at 15 and 0.96-0.97 at 30; none/avg 0.35, 0.80-0.85 and
    # 0.90-0.92 (lr 0.01; lr 0.003 or 0.001 was worse, 0.03 unstable; 2 seeds each, this
    # 2-core CPU). 15 keeps the whole sweep within 15 minutes there (20 did not: 34 of 56
    # variants in 15 min under load 6-8). The PoolStack stages (global-average head too) use
    # the same epochs.
    c.head_epochs = (("avg", 15),)
    c.num_steps = ml_collections.config_dict.placeholder(int)  # set: overrides num_epochs
    c.batch_size = 64
    # AdamW: with the train.py default (SGD, lr 0.05) the global-average heads stay near
    # chance within a few epochs, which would leave half the sweep untrained.
    c.optimizer = "adamw"
    c.learning_rate = 0.01
    c.weight_decay = 1e-4
    c.max_shift_train = 0  # no translation augmentation: invariance must come from the model
    # Train-time shift experiment: these downsamples (first head) retrained with random
    # shifts of up to each of augment_shifts px, against the un-augmented sweep; () skips.
    c.augment_shifts = (4,)
    c.augment_downsamples = ("max", "avg", "blur", "none", "strided_conv")
    # Texture experiment ("" skips): max vs avg (and more) trained and tested on a texture
    # dataset of poolnets.data (the bundled procedural `textures`).
    c.texture_dataset = "textures"
    c.texture_downsamples = ("max", "avg", "lp", "none", "blur")
    c.texture_heads = ("flatten",)
    # Epochs for the texture variants (0: the head's). At 5 epochs max/flatten on
    # textures still varied by seed (0.40-0.78 at pixel noise 0.3); at 10, 0.92-0.95.
    c.texture_epochs = 10
    c.feature_layer = "S4"  # module whose output ERF and Grad-CAM read (LeNet: last pool)
    c.shifts = (0, 1, 2, 3, 4, 6, 8)  # accuracy vs horizontal shift, pixels
    c.consistency_max_shift = 4
    c.consistency_draws = 2
    c.gaussian_sigmas = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
    c.salt_pepper = (0.0, 0.05, 0.1, 0.2, 0.3)
    c.rotations = (0.0, 10.0, 20.0, 30.0, 45.0)
    c.scalings = (0.7, 0.85, 1.0, 1.15, 1.3)
    # Pooled stages of the PoolStack experiment (() skips it). k = 0 convolves 32x32 maps
    # at every layer, ~5x the cost of k = 1, so the CPU default leaves it out; LeNet-5's
    # `none` variants measure the unpooled case.
    c.stages = (1, 2, 3, 4)
    c.stage_channels = (8, 16, 16, 32)
    c.erf_images = 64
    c.gradcam_images = 6
    c.chunk = 256  # evaluation batch (one compile per architecture)
    # Variants trained at once in separate processes. On CPU one LeNet-5 step keeps one
    # core busy (measured: the same step time on 1 and 2 cores), and compiling is serial,
    # so 2 workers use a 2-core machine; on an accelerator set 1.
    c.workers = 2
    c.seed_parallel = "loop"  # "vmap" on accelerators (poolnets.analysis.fit)
    c.max_minutes = 13.0  # start no new variant after this long (the rest is listed unrun)
    return c


def load_config(path: str | None) -> ml_collections.ConfigDict:
    """The defaults updated with `get_config()` of the file at `path` (None: defaults)."""
    config = default_config()
    if path is None:
        return config
    if not os.path.isfile(path):
        raise ValueError(f"--config {path!r}: no such file")
    spec = importlib.util.spec_from_file_location("report_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    loaded = module.get_config()
    unknown = sorted(set(loaded) - set(config))
    if unknown:
        raise ValueError(f"--config {path!r}: unknown fields {unknown}; fields: {sorted(config)}")
    config.update(loaded)
    return config


def apply_overrides(config: ml_collections.ConfigDict, overrides: list[str]) -> None:
    """`field=value` strings; value is a Python literal (seeds=(0,1), num_epochs=3) or a bare
    word, kept as a string; a single value for a tuple field becomes a 1-tuple (heads=avg)."""
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected field=value")
        field, text = item.split("=", 1)
        if field not in config:
            raise ValueError(f"--set {item!r}: unknown field {field!r}; fields: {sorted(config)}")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        current = config[field]
        if isinstance(current, tuple) and not isinstance(value, tuple | list):
            value = (value,)
        elif isinstance(current, float) and isinstance(value, int):
            value = float(value)
        try:
            config[field] = tuple(value) if isinstance(value, list) else value
        except TypeError as e:
            raise ValueError(f"--set {item!r}: {e}") from None


def resolve_downsamples(config: ml_collections.ConfigDict) -> list[str]:
    """The sweep's downsample names in run order (core first)."""
    from poolnets.nn import downsample_names

    names = downsample_names()
    chosen = [config.downsamples] if isinstance(config.downsamples, str) else list(
        config.downsamples)
    if chosen == ["all"]:
        return [n for n in CORE_DOWNSAMPLES if n in names] + [
            n for n in names if n not in CORE_DOWNSAMPLES]
    bad = [n for n in chosen if n not in names]
    if bad:
        raise ValueError(f"downsamples: unknown {bad}; choices: {names}")
    return chosen
