"""`python -m poolnets.report [--config FILE] [--config.<field>=<value> ...] [--out DIR]`

Runs a sweep (default: poolnets/report/configs/default.py, LeNet-5 on the bundled digits,
every downsample x {flatten, avg} head, 3 seeds), then writes DIR/README.md,
DIR/results.json, DIR/arrays.npz and the PNG figures (default DIR: report/). A sweep file's
`get_config()` returns any fields of `poolnets.report.config.default_config()`; any field
can be overridden with `--config.<field>=<value>`, as in train.py. Other flags:
`--render-only` (README and figures again from DIR's results, no training),
`--no-progress` (no tqdm bar on stderr). Bad input prints one line naming the value and the
choices, exit status 2.
"""

from __future__ import annotations

import glob
import json
import os
import platform
import shlex
import sys
import time
from typing import Any

import numpy as np

os.environ.setdefault("MPLBACKEND", "Agg")


def machine() -> str:
    """A one-line description of where the sweep ran."""
    import jax

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        if names:
            cpu = names[0]
    except OSError:
        pass
    load = ""
    if hasattr(os, "getloadavg"):
        load = f", load average at start {os.getloadavg()[0]:.1f}"
    return (f"{os.cpu_count()} logical CPUs ({cpu}){load}; JAX {jax.__version__} "
            f"backend {jax.default_backend()} ({jax.devices()[0].device_kind})")


def code_version() -> str:
    """The git commit of the package being run, "+ local changes" when its files differ."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "poolnets"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{commit}{' + local changes' if dirty else ''}"


def _write(results: list, arrays: dict | None, meta: dict, config: Any, out: str) -> None:
    from poolnets.report.figures import make_figures
    from poolnets.report.writeup import write_readme

    figures = make_figures(results, arrays, config, out)
    write_readme(results, meta, figures, out)


def read_arrays(path: str) -> dict[str, dict] | None:
    """The per-variant maps (ERF, Grad-CAM) a run stored in `path`; None if there is none."""
    if not os.path.exists(path):
        return None
    stored = np.load(path)
    arrays: dict[str, dict] = {}
    for key in stored.files:
        name, kind = key.split("|")
        arrays.setdefault(name, {})[kind] = stored[key].astype(np.float32)
    return arrays


def render(out: str) -> int:
    """README and figures again from a finished run's files (no training).

    Everything but the ERF and Grad-CAM figures is drawn from results.json alone; those two
    need DIR/arrays.npz, and without it the PNGs the run left in DIR are kept as they are.
    """
    import ml_collections

    try:
        with open(os.path.join(out, "results.json")) as f:
            saved = json.load(f)
    except OSError as e:
        print(f"poolnets.report: error: --render-only needs an earlier run in {out!r}: {e}",
              file=sys.stderr)
        return 2
    arrays = read_arrays(os.path.join(out, "arrays.npz"))
    if arrays is None:
        print(f"poolnets.report: no arrays.npz in {out!r}: erf.png and gradcam.png are kept "
              "as the run drew them, not redrawn", file=sys.stderr)
    config = ml_collections.ConfigDict(saved["meta"]["config"])
    _write(saved["results"], arrays, saved["meta"], config, out)
    print(f"report re-rendered in {os.path.join(out, 'README.md')}")
    return 0


def parse_args(argv: list[str]) -> tuple[Any, Any]:
    """(sweep config, the other flags) from argv (without the program name); raises
    poolnets.training.cli.UsageError or ConfigError, both one line."""
    from absl import flags

    from poolnets.report.config import check_sweep, default_config
    from poolnets.training import cli

    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
    root = os.path.dirname(os.path.dirname(os.path.dirname(here)))  # above poolnets/
    argv = ["python -m poolnets.report", *argv]
    values = flags.FlagValues()
    cli.define_config(argv, default=os.path.join(here, "default.py"), base=default_config,
                      choices=sorted(os.path.relpath(p, root) for p in glob.glob(f"{here}/*.py")),
                      flag_values=values, help_string="Sweep config file.")
    flags.DEFINE_string("out", "report", "Output directory.", flag_values=values)
    flags.DEFINE_boolean("no-progress", False, "Hide the progress bar.", flag_values=values)
    flags.DEFINE_boolean("render-only", False, "Rewrite README.md and the figures from "
                         "DIR/results.json (and DIR/arrays.npz) of an earlier run.",
                         flag_values=values)
    rest = cli.parse(values, argv)
    if len(rest) > 1:
        raise cli.UsageError(f"unexpected arguments {rest[1:]}; use --config.<field>=<value>")
    if not values["render-only"].value:
        check_sweep(values.config)
    return values.config, values


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(arg in ("-h", "--help", "-help") for arg in argv):
        print(__doc__.strip())
        return 0
    try:
        config, args = parse_args(argv)
    except ValueError as e:  # UsageError, ConfigError: one line
        print(f"poolnets.report: error: {e}", file=sys.stderr)
        return 2
    out = args.out
    if args["render-only"].value:
        return render(out)
    start_info = machine()
    t0 = time.perf_counter()
    from poolnets.report.run import run_sweep
    from poolnets.training.config import ConfigError

    try:  # the step counts of every variant are computed before the first one trains
        results, arrays, skipped = run_sweep(config, show_progress=not args["no-progress"].value)
    except ConfigError as e:  # e.g. a batch larger than a dataset
        print(f"poolnets.report: error: {e}", file=sys.stderr)
        return 2
    wall = time.perf_counter() - t0
    command = " ".join(["python -m poolnets.report", *map(shlex.quote, argv)])
    meta = {"command": command, "machine": start_info, "wall_s": round(wall, 1),
            "code": code_version(),
            "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
            "config": config.to_dict(), "skipped": skipped}
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1, default=list)
    np.savez_compressed(os.path.join(out, "arrays.npz"), **{
        f"{name}|{key}": value.astype(np.float32)
        for name, per in arrays.items() for key, value in per.items()})
    _write(results, arrays, meta, config, out)
    print(f"report written to {os.path.join(out, 'README.md')} in {wall:.0f} s "
          f"({len(results)} variants, {len(skipped)} not run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
