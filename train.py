"""Trains a poolnets model: `python train.py --config configs/<name>.py --workdir <dir>`.

Any config field can be overridden with `--config.<field>=<value>`. With no arguments this
runs configs/default.py (LeNet-5 on the bundled `digits` dataset, offline). The workdir
(default runs/<config>-<timestamp>) receives config.json, metrics.jsonl, tensorboard/,
checkpoints/, curves.png (train loss and test accuracy against step) and summary.json;
running again with the same --workdir resumes from the newest checkpoint that restores.
Live curves: `pip install tensorboard`, then `tensorboard --logdir <workdir>/tensorboard`.
Bad input (unknown config file, field, model, dataset; a number out of its range; batch
size that does not fit the devices; unwritable workdir; dataset not prepared; a checkpoint
that does not fit the config) prints one line naming the value and the choices, exit status
2. Loss or gradients turning NaN/Inf stop the run with one line naming the step, and a file
that cannot be written (a full disk) with one line naming the file and the cause, exit
status 1. Multi-host: set --config.distributed.* (or $JAX_COORDINATOR_ADDRESS,
$JAX_NUM_PROCESSES, $JAX_PROCESS_ID) and start the same command once per process.
"""

import ast
import glob
import importlib.util
import os
import sys
import textwrap
import time

from absl import app, flags, logging
from ml_collections import ConfigDict, config_flags

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONFIG = os.path.join(HERE, "configs", "default.py")
HELP_FLAGS = ("-h", "-?", "--help", "-help", "--helpshort", "--helpfull")


def fail(message: str) -> None:
    """One line on stderr, exit status 2."""
    print(f"train.py: error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(2)


def usage() -> str:
    """This docstring, the config files with the first paragraph of each one's docstring,
    and every config field with its default and meaning (poolnets/training/defaults.py)."""
    from poolnets.training.defaults import base_config, field_docs

    def rows(pairs: list[tuple[str, str]]) -> list[str]:
        width = max(len(left) for left, _ in pairs) + 2
        indent = " " * (width + 2)
        return [textwrap.fill(right, 100, initial_indent="  " + left.ljust(width),
                              subsequent_indent=indent) for left, right in pairs]

    configs = []
    for path in sorted(glob.glob(f"{HERE}/configs/*.py")):
        with open(path) as f:
            doc = ast.get_docstring(ast.parse(f.read())) or "(no docstring)"
        configs.append((os.path.basename(path), " ".join(doc.split("\n\n")[0].split())))
    defaults, fields = base_config(), []
    for field, meaning in field_docs().items():
        value = defaults
        for part in field.split("."):
            value = value[part]
        fields.append((f"{field}.*" if isinstance(value, ConfigDict) else f"{field}={value!r}",
                       meaning))
    return "\n".join([
        __doc__.strip(), "", "Config files (--config configs/<name>.py):", *rows(configs), "",
        "Config fields (--config.<field>=<value>) with their defaults and meanings, as documented",
        "in poolnets/training/defaults.py (base_config, where every config file starts):",
        *rows(fields), "", "Flags:",
        *rows([("--config FILE", "a config file (default configs/default.py)"),
               ("--workdir DIR", "output directory (default runs/<config>-<time>)"),
               ("--help", "this text")]),
    ])


def config_path(argv: list[str]) -> str:
    """The --config file named in argv (without a `:arguments` suffix), else the default."""
    path = DEFAULT_CONFIG
    for i, arg in enumerate(argv):
        if arg.startswith(("--config=", "-config=")):
            path = arg.split("=", 1)[1]
        elif arg in ("--config", "-config") and i + 1 < len(argv):
            path = argv[i + 1]
    return path.split(":", 1)[0]


def check_overrides(argv: list[str], config: ConfigDict, path: str) -> None:
    """Every --config.<a.b.c>=... must name an existing field."""
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        node, prefix = config, ""
        for part in arg[len("--config."):].split("=", 1)[0].split("."):
            if not isinstance(node, ConfigDict) or part not in node:
                fields = ", ".join(sorted(prefix + k for k in node)) if isinstance(
                    node, ConfigDict) else "(none: not a group)"
                fail(f"unknown config field {prefix + part!r} in {path}; choices: {fields}")
            node, prefix = node[part], f"{prefix}{part}."


def one_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[-1] if text else repr(error)


def define_flags(argv: list[str]) -> None:
    """Checks the config file and the override names, then defines the flags.

    config_flags reads sys.argv's --config.* overrides when the flag is defined, so the
    checks run first: a bad name fails here with one line instead of a traceback.
    """
    path = config_path(argv)
    if not os.path.isfile(path):
        choices = ", ".join(sorted(os.path.relpath(p) for p in glob.glob(f"{HERE}/configs/*.py")))
        fail(f"config file {path!r} not found; choices: {choices}")
    try:
        spec = importlib.util.spec_from_file_location("train_config", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        check_overrides(argv, module.get_config(), path)
        config_flags.DEFINE_config_file("config", DEFAULT_CONFIG, "Training config file.")
    except Exception as e:  # noqa: BLE001 -- a config that does not load is bad input
        fail(f"config file {path!r}: {one_line(e)}")
    flags.DEFINE_string("workdir", None, "Output directory (default runs/<config>-<time>).")


def parse_flags(argv: list[str]) -> list[str]:
    try:
        return flags.FLAGS(argv)
    except Exception as e:  # noqa: BLE001 -- any parse failure is bad input: one line, exit 2
        fail(one_line(e))


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}; use --config.<field>=<value>")
    if not flags.FLAGS["verbosity"].present:
        # INFO chatter (JAX probing for absent TPUs) would bury the progress bar; -v 0 shows it.
        logging.set_verbosity(logging.WARNING)
    from poolnets.training import (
        CheckpointError,
        ConfigError,
        TrainingDiverged,
        WriteError,
        train_and_evaluate,
    )
    from poolnets.training.setup import initialize_distributed

    name = os.path.splitext(os.path.basename(config_path(sys.argv)))[0]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir = flags.FLAGS.workdir or os.path.join("runs", f"{name}-{stamp}")
    try:
        initialize_distributed(flags.FLAGS.config)
        summary = train_and_evaluate(flags.FLAGS.config, workdir)
    except (ConfigError, CheckpointError) as e:
        fail(e)
    except (TrainingDiverged, WriteError) as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        sys.exit(1)
    import jax

    if jax.process_index() != 0:
        return
    print(
        f"{summary['model']} on {summary['dataset']}: test_accuracy {summary['test_accuracy']:.4f}"
        f"  test_loss {summary['test_loss']:.4f}  steps {summary['steps']}"
        f"  train_time_s {summary['train_time_s']:.1f}  workdir {os.path.abspath(workdir)}"
    )


if __name__ == "__main__":
    if any(arg in HELP_FLAGS for arg in sys.argv[1:]):
        print(usage())
        sys.exit(0)
    define_flags(sys.argv)
    app.run(main, flags_parser=parse_flags)
