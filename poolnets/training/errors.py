"""The error a config raises before anything runs (a leaf module: the config checks and
the optimizer/step arithmetic both raise it)."""


class ConfigError(ValueError):
    """A config value that cannot work, found before training starts."""
