"""Naming the arrays of a loaded checkpoint that hold NaN or Inf.

A flipped bit in a file can turn a weight into NaN or Inf; loaded silently, it surfaces
only as a diverged first training step. Checked at load instead, the error names the arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SHOWN = 5  # arrays named in the message; the rest are counted


def nonfinite_report(arrays: dict[str, Any], source: str) -> str | None:
    """One line naming the floating-point arrays of `arrays` holding NaN or Inf (with their
    counts), prefixed by `source`; None when all are finite. Integer and bool arrays are
    skipped."""
    bad = []
    for key in sorted(arrays):
        value = np.asarray(arrays[key])
        if value.dtype.kind in "biu" or np.isfinite(value).all():
            continue
        counts = ((int(np.count_nonzero(np.isnan(value))), "NaN"),
                  (int(np.count_nonzero(np.isinf(value))), "Inf"))
        bad.append(f"{key!r} ({', '.join(f'{n} {what}' for n, what in counts if n)})")
    if not bad:
        return None
    more = f" and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
    verb = "tensor holds" if len(bad) == 1 else "tensors hold"
    return (f"{source}: {len(bad)} {verb} NaN or Inf (a damaged file?): "
            f"{', '.join(bad[:SHOWN])}{more}")
