"""The report's sweep configuration: its fields and defaults, and their checks.

A sweep config file is a Python file with `get_config() -> ml_collections.ConfigDict`
holding any of the fields of `default_config()` (missing fields keep their defaults);
`python -m poolnets.report --config FILE --config.<field>=<value>` loads it and applies the
overrides as train.py does (poolnets/training/cli.py), then `check_sweep` checks it.
"""

from __future__ import annotations

import ml_collections

from poolnets.training.config import ConfigError, Range

# The downsampling choices the issue names first; the sweep runs them before the others.
CORE_DOWNSAMPLES = ("max", "avg", "lp", "strided_conv", "none", "blur", "stochastic")
SEED_PARALLEL = ("loop", "vmap")  # how poolnets.analysis.fit runs a variant's seeds

_COUNT = Range(1, integer=True)
_COUNTS = Range(1, integer=True, sequence=True)
_PIXELS = Range(0, integer=True)
# Every numeric field of `default_config()` and the values it accepts (checked by
# `check_sweep`; tests/report check no numeric field is missing).
SWEEP_NUMBERS: dict[str, Range] = {
    # >= 0 for numpy's default_rng (batch order), < 2**63 for jax.random.key
    "seeds": Range(0, 2**63, integer=True, sequence=True, text="an integer in [0, 2**63)"),
    "num_epochs": _COUNT,
    "num_steps": Range(1, integer=True, optional=True),
    "train_examples": Range(1, integer=True, optional=True),
    "test_examples": Range(1, integer=True, optional=True),
    "batch_size": _COUNT,
    "learning_rate": Range(0, low_open=True),
    "weight_decay": Range(0),
    "max_shift_train": _PIXELS,
    "augment_shifts": _COUNTS,
    "texture_epochs": Range(0, integer=True),
    "shifts": Range(0, integer=True, sequence=True),
    "consistency_max_shift": _PIXELS,
    "consistency_draws": _COUNT,
    "gaussian_sigmas": Range(0, sequence=True),
    "salt_pepper": Range(0, 1, high_open=False, sequence=True),
    "rotations": Range(-360, 360, high_open=False, sequence=True),
    "scalings": Range(0, low_open=True, sequence=True),
    "stages": Range(0, integer=True, sequence=True),  # at most len(stage_channels)
    "stage_channels": _COUNTS,
    "erf_images": _COUNT,
    "gradcam_images": _COUNT,
    "chunk": _COUNT,
    "workers": _COUNT,
    "max_minutes": Range(0, low_open=True),
}


def default_config() -> ml_collections.ConfigDict:
    """LeNet-5 on the bundled digits: every downsample x {flatten, avg} heads, 3 seeds."""
    c = ml_collections.ConfigDict()
    c.model = "lenet5"
    c.dataset = "digits"
    c.data_dir = ml_collections.config_dict.placeholder(str)
    # The first N examples of config.dataset's train / test split (None: all of it), so a
    # large dataset fits a CPU budget; the texture experiment keeps its whole dataset.
    c.train_examples = ml_collections.config_dict.placeholder(int)
    c.test_examples = ml_collections.config_dict.placeholder(int)
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


def _names(config: ml_collections.ConfigDict, field: str) -> list[str]:
    value = config[field]
    return [value] if isinstance(value, str) else list(value)


def _check_names(config: ml_collections.ConfigDict, field: str, valid: list[str]) -> None:
    bad = [n for n in _names(config, field) if n not in valid]
    if bad:
        raise ConfigError(f"config.{field}={config[field]!r}: {bad[0]!r} is not valid; "
                          f"choices: {', '.join(valid)}")


def check_sweep(config: ml_collections.ConfigDict) -> None:
    """Every field of a sweep config against its choices or range, before anything runs;
    raises ConfigError (a ValueError), one line naming the field, the value and the choices,
    as `poolnets.training.config.check_config` does for train.py."""
    from poolnets.data import dataset_names
    from poolnets.models import downsample_names, head_names, list_models
    from poolnets.training.config import check_choice, check_numbers
    from poolnets.training.optim import OPTIMIZERS

    check_numbers(config, SWEEP_NUMBERS)
    check_choice("model", config.model, list_models())
    check_choice("dataset", config.dataset, dataset_names())
    if config.texture_dataset:
        check_choice("texture_dataset", config.texture_dataset, dataset_names())
    check_choice("optimizer", config.optimizer, OPTIMIZERS)
    check_choice("seed_parallel", config.seed_parallel, SEED_PARALLEL)
    resolve_downsamples(config)
    for field in ("augment_downsamples", "texture_downsamples"):
        _check_names(config, field, downsample_names())
    for field in ("heads", "texture_heads"):
        _check_names(config, field, head_names())
    deepest = len(config.stage_channels)
    if any(k > deepest for k in config.stages):
        raise ConfigError(f"config.stages={config.stages!r} pools more stages than the "
                          f"{deepest} of config.stage_channels; choices: 0..{deepest} each")
    for pair in config.head_epochs:
        if (not isinstance(pair, tuple | list) or len(pair) != 2 or pair[0] not in head_names()
                or not SWEEP_NUMBERS["num_epochs"].accepts(pair[1])):
            raise ConfigError(f"config.head_epochs={config.head_epochs!r}: {pair!r} is not a "
                              "(head, epochs) pair; choices: a head of "
                              "poolnets.models.head_names() and an integer >= 1")


def resolve_downsamples(config: ml_collections.ConfigDict) -> list[str]:
    """The sweep's downsample names in run order (core first)."""
    from poolnets.models import downsample_names

    names = downsample_names()
    chosen = [config.downsamples] if isinstance(config.downsamples, str) else list(
        config.downsamples)
    if chosen == ["all"]:
        return [n for n in CORE_DOWNSAMPLES if n in names] + [
            n for n in names if n not in CORE_DOWNSAMPLES]
    _check_names(config, "downsamples", names)
    return chosen
