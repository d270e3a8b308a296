"""Config files on the command line, shared by `train.py` and `python -m poolnets.report`.

`--config FILE` names a Python file whose `get_config()` returns an `ml_collections`
ConfigDict; `--config.<field>=<value>` overrides one field through ml_collections'
`config_flags` (values parsed and type-checked as the field's type). Every problem (no such
file, a file that does not load, an unknown field, a value of the wrong type) is a
`UsageError` whose message is one line naming the value and the choices; the commands print
it and exit with status 2. Imports no JAX, so bad input fails in well under a second.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable

from absl import flags
from ml_collections import ConfigDict, config_flags

__all__ = ["UsageError", "config_path", "define_config", "one_line", "parse", "without_config"]


class UsageError(ValueError):
    """Bad command-line input; the message is one line naming the value and the choices."""


def one_line(error: Exception) -> str:
    """The last line of an exception's message (absl and config_flags messages end with
    the useful part)."""
    text = str(error).strip()
    return " ".join(text.splitlines()[-1].split()) if text else repr(error)


def _is_config_arg(arg: str) -> bool:
    return arg in ("--config", "-config") or arg.startswith(("--config=", "-config="))


def config_path(argv: list[str], default: str) -> str:
    """The --config file named in argv (the last one wins), else `default`."""
    path = default
    for i, arg in enumerate(argv):
        if arg.startswith(("--config=", "-config=")):
            path = arg.split("=", 1)[1]
        elif arg in ("--config", "-config") and i + 1 < len(argv):
            path = argv[i + 1]
    return path


def without_config(argv: list[str]) -> list[str]:
    """argv without its `--config FILE` / `--config=FILE` (read by `define_config`), so the
    flag parser sees only the overrides and the other flags."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif _is_config_arg(arg):
            skip = "=" not in arg
        else:
            out.append(arg)
    return out


def _load(path: str, choices: list[str], base: Callable[[], ConfigDict] | None) -> ConfigDict:
    if not os.path.isfile(path):
        raise UsageError(f"config file {path!r} not found; choices: {', '.join(choices)}")
    try:
        spec = importlib.util.spec_from_file_location("command_line_config", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        loaded = module.get_config()
    except Exception as e:  # noqa: BLE001 -- a config that does not load is bad input
        raise UsageError(f"config file {path!r}: {one_line(e)}") from None
    if base is None:
        return loaded
    config = base()
    unknown = sorted(set(loaded) - set(config))
    if unknown:
        raise UsageError(f"config file {path!r}: unknown field {unknown[0]!r}; choices: "
                         f"{', '.join(sorted(config))}")
    for key, value in loaded.items():  # values, not FieldReferences (update() refuses those)
        try:
            config[key] = value
        except (TypeError, ValueError) as e:
            raise UsageError(f"config file {path!r}: field {key!r}: {one_line(e)}") from None
    return config


def _check_overrides(argv: list[str], config: ConfigDict, path: str) -> None:
    """Every --config.<a.b.c>=... must name an existing field (config_flags' own error is a
    multi-line traceback)."""
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        node, prefix = config, ""
        for part in arg[len("--config."):].split("=", 1)[0].split("."):
            if not isinstance(node, ConfigDict) or part not in node:
                fields = ", ".join(sorted(prefix + k for k in node)) if isinstance(
                    node, ConfigDict) else "(none: not a group)"
                raise UsageError(f"unknown config field {prefix + part!r} in {path}; "
                                 f"choices: {fields}")
            node, prefix = node[part], f"{prefix}{part}."


def define_config(
    argv: list[str], *, default: str, choices: list[str], flag_values: flags.FlagValues,
    base: Callable[[], ConfigDict] | None = None, help_string: str = "Config file.",
) -> str:
    """Loads argv's --config file (else `default`), checks the override names, and defines
    the flag `config` in `flag_values` holding that ConfigDict; returns the file's path.

    base: a function giving the full config with defaults, which the file's `get_config()`
    may return only part of (missing fields keep their defaults); None: the file returns
    every field. choices: the config files listed when the named one does not exist.
    Parse with `parse(flag_values, argv)`.
    """
    path = config_path(argv, default)
    config = _load(path, choices, base)
    _check_overrides(argv, config, path)
    try:
        config_flags.DEFINE_config_dict("config", config, help_string, flag_values=flag_values,
                                        sys_argv=without_config(argv))
    except Exception as e:  # noqa: BLE001 -- e.g. a field config_flags cannot override
        raise UsageError(f"config file {path!r}: {one_line(e)}") from None
    return path


def parse(flag_values: flags.FlagValues, argv: list[str]) -> list[str]:
    """Parses argv (program name first) into `flag_values`; returns the leftover
    positionals (program name first). Any parse failure is a one-line UsageError."""
    try:
        return flag_values(without_config(argv))
    except Exception as e:  # noqa: BLE001 -- any parse failure is bad input
        raise UsageError(one_line(e)) from None
