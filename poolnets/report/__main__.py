"""`python -m poolnets.report [--config FILE] [--set field=value ...] [--out DIR]`

Runs the sweep of `poolnets.report.config` (default: LeNet-5 on the bundled digits, every
downsample x {flatten, avg} head, 3 seeds), then writes DIR/README.md, DIR/results.json and
the PNG figures (default DIR: report/). Progress goes to stderr as a tqdm bar.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m poolnets.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="Python file with get_config()")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override one config field (Python literal), repeatable")
    parser.add_argument("--out", default="report", help="output directory (default: report)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite README.md and figures from DIR/results.json (and "
                             "DIR/arrays.npz if present) of an earlier run, without measuring")
    args = parser.parse_args(argv)
    if args.render_only:
        return render(args.out)

    from poolnets.report import config as cfg

    try:
        config = cfg.load_config(args.config)
        cfg.apply_overrides(config, args.set)
        cfg.resolve_downsamples(config)
    except ValueError as e:
        print(f"poolnets.report: error: {e}", file=sys.stderr)
        return 2
    start_info = machine()
    t0 = time.perf_counter()
    from poolnets.report.run import run_sweep

    results, arrays, skipped = run_sweep(config, show_progress=not args.no_progress)
    wall = time.perf_counter() - t0
    command = "python -m poolnets.report" + "".join(
        f" --config {args.config}" if args.config else "") + "".join(
        f" --set {s}" for s in args.set) + (f" --out {args.out}" if args.out != "report" else "")
    meta = {"command": command, "machine": start_info, "wall_s": round(wall, 1),
            "code": code_version(),
            "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
            "config": config.to_dict(), "skipped": skipped}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1, default=list)
    np.savez_compressed(os.path.join(args.out, "arrays.npz"), **{
        f"{name}|{key}": value.astype(np.float32)
        for name, per in arrays.items() for key, value in per.items()})
    _write(results, arrays, meta, config, args.out)
    print(f"report written to {os.path.join(args.out, 'README.md')} in {wall:.0f} s "
          f"({len(results)} variants, {len(skipped)} not run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
