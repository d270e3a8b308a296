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
import os
import sys
import textwrap
import time

from absl import app, flags, logging
from ml_collections import ConfigDict

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
                              break_on_hyphens=False,  # "Fashion-MNIST" stays one word
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


def define_flags(argv: list[str]) -> None:
    """Loads the config file, checks the override names (one line, exit 2, before JAX is
    imported), then defines the flags (poolnets/training/cli.py)."""
    from poolnets.training import cli

    choices = sorted(os.path.relpath(p) for p in glob.glob(f"{HERE}/configs/*.py"))
    try:
        cli.define_config(argv, default=DEFAULT_CONFIG, choices=choices,
                          flag_values=flags.FLAGS, help_string="Training config file.")
    except cli.UsageError as e:
        fail(e)
    flags.DEFINE_string("workdir", None, "Output directory (default runs/<config>-<time>).")


def parse_flags(argv: list[str]) -> list[str]:
    from poolnets.training import cli

    try:
        return cli.parse(flags.FLAGS, argv)
    except cli.UsageError as e:
        fail(e)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}; use --config.<field>=<value>")
    if not flags.FLAGS["verbosity"].present:
        # INFO chatter (JAX probing for absent TPUs) would bury the progress bar; -v 0 shows it.
        logging.set_verbosity(logging.WARNING)
    from poolnets.training.cli import config_path

    name = os.path.splitext(os.path.basename(config_path(sys.argv, DEFAULT_CONFIG)))[0]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir = flags.FLAGS.workdir or os.path.join("runs", f"{name}-{stamp}")
    config = flags.FLAGS.config
    # Said before the imports below (JAX and its friends take seconds): the run then says
    # "preparing data", "compiling ...", and shows a progress bar.
    dist = config.distributed  # as initialize_distributed reads it: process 0 speaks
    process = dist.process_id if dist.coordinator_address else os.environ.get("JAX_PROCESS_ID")
    if str(process or 0) == "0":
        print(f"train.py: {config.model.name} on {config.dataset} ({name}), workdir {workdir}: "
              "importing JAX", flush=True)
    from poolnets.training import (
        CheckpointError,
        ConfigError,
        TrainingDiverged,
        WriteError,
        train_and_evaluate,
    )
    from poolnets.training.setup import initialize_distributed

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
