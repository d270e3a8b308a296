"""Converted variables as an orbax checkpoint, so a conversion runs once and is restored later.

`save_variables(directory, variables)` writes `{"params", "batch_stats"}` with orbax's
StandardCheckpointer (written to a temporary directory and renamed when complete);
`restore_variables(directory)` reads them back as NumPy arrays, or, given `target` (e.g.
`jax.eval_shape` of `model.init`), checks the tree structure and shapes against it; arrays
holding NaN or Inf are refused by name unless `allow_nonfinite`.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from poolnets.weights.finite import nonfinite_report


def save_variables(directory: str | os.PathLike, variables: dict[str, Any]) -> str:
    """Writes `variables` to the new directory `directory`; returns its absolute path."""
    import orbax.checkpoint as ocp

    path = os.path.abspath(os.fspath(directory))
    if os.path.exists(path):
        raise ValueError(f"directory {path!r} already exists; choose a new path")
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(path, jax.tree.map(np.asarray, variables))
        checkpointer.wait_until_finished()
    return path


def restore_variables(directory: str | os.PathLike, target: Any = None, *,
                      allow_nonfinite: bool = False) -> dict[str, Any]:
    """Reads variables written by `save_variables` (NumPy arrays on the host).

    target: optional pytree of arrays or `jax.ShapeDtypeStruct`s; when given, a checkpoint of
    another structure or shape raises ValueError.
    allow_nonfinite: if False (default), arrays holding NaN or Inf raise ValueError naming
    them (e.g. variables saved from a diverged run).
    """
    import orbax.checkpoint as ocp

    path = os.path.abspath(os.fspath(directory))
    if not os.path.isdir(path):
        raise ValueError(f"directory {path!r} is not a checkpoint directory")
    with ocp.StandardCheckpointer() as checkpointer:
        if target is None:
            restored = checkpointer.restore(path)
        else:
            abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), target)
            try:
                restored = checkpointer.restore(path, abstract)
            except (ValueError, KeyError) as e:
                raise ValueError(f"checkpoint {path!r} does not match the target: {e}") from None
            _check_shapes(path, restored, abstract)
    restored = jax.tree.map(np.asarray, restored)
    if not allow_nonfinite:
        flat = {jax.tree_util.keystr(p, simple=True, separator="/"): x
                for p, x in jax.tree_util.tree_flatten_with_path(restored)[0]}
        if report := nonfinite_report(flat, path):
            raise ValueError(report)
    return restored


def _check_shapes(path: str, restored: Any, abstract: Any) -> None:
    """orbax may restore a stored array of another shape than the target asks for."""
    got = jax.tree_util.tree_flatten_with_path(restored)[0]
    want = jax.tree.leaves(abstract)
    bad = [f"{jax.tree_util.keystr(p)}: stored {tuple(np.shape(x))}, target {w.shape}"
           for (p, x), w in zip(got, want, strict=True) if tuple(np.shape(x)) != w.shape]
    if bad:
        raise ValueError(f"checkpoint {path!r} does not match the target: {bad[:5]}")
