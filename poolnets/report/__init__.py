"""The pooling report: `python -m poolnets.report` measures what pooling buys a CNN.

Default sweep: LeNet-5 on the bundled digits, every registered downsample (core choices
first) x {flatten, global-average} heads, 3 seeds each, plus a PoolStack experiment on the
number of pooling stages; then report/README.md (claims table, main table), results.json
and PNG figures. `--config FILE` (a `get_config()` Python file) and
`--config.<field>=<value>` run it for any model and dataset the package knows, e.g. on an
accelerator with more seeds and epochs; `max_minutes` bounds the time (variants past it are
listed as not run).

    config   fields, defaults, checks        sweep    variants, probe set, measurements
    run      workers, time budget, progress  figures  matplotlib (Agg) PNGs
    claims   one verdict per claim, computed from results.json
    writeup  README.md: claims table, main table, figures
"""
