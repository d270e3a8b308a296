"""The report's PNG figures (matplotlib, Agg backend, small files)."""

from __future__ import annotations

import os
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DPI = 80


def _zoo(results: list[dict], head: str | None = None) -> list[dict]:
    return [r for r in results if r["kind"] == "zoo" and (head is None or r["head"] == head)]


def _heads(results: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["head"] for r in _zoo(results)))


def _save(fig: Any, out: str, name: str) -> str:
    fig.tight_layout()
    fig.savefig(os.path.join(out, name), dpi=DPI)
    plt.close(fig)
    return name


def _colors(n: int) -> list:
    cmap = plt.get_cmap("tab20")
    return [cmap(i % 20) for i in range(n)]


def _curves(ax: Any, rows: list[dict], key: str, xs: Any, title: str, xlabel: str) -> None:
    for r, color in zip(rows, _colors(len(rows)), strict=True):
        m, s = np.asarray(r[key]["mean"]), np.asarray(r[key]["std"])
        ax.plot(xs, m, "-o", ms=3, color=color, label=r["downsample"])
        ax.fill_between(xs, m - s, m + s, color=color, alpha=0.15)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("test accuracy", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def fig_shift(results: list[dict], config: Any, out: str) -> str:
    heads = _heads(results)
    fig, axes = plt.subplots(1, len(heads), figsize=(4.2 * len(heads), 3.4), squeeze=False)
    for ax, head in zip(axes[0], heads, strict=True):
        _curves(ax, _zoo(results, head), "shift_accuracy", list(config.shifts),
                f"accuracy vs horizontal shift ({head} head)", "shift (pixels)")
    axes[0][-1].legend(fontsize=6, ncol=2)
    return _save(fig, out, "shift_accuracy.png")


def _bars(ax: Any, rows: list[dict], key: str, title: str) -> None:
    names = [r["name"] for r in rows]
    m = [r[key]["mean"] for r in rows]
    s = [r[key]["std"] for r in rows]
    ax.barh(range(len(rows)), m, xerr=s, color="tab:blue", alpha=0.8)
    ax.set_yticks(range(len(rows)), names, fontsize=6)
    ax.invert_yaxis()
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3, axis="x")


def fig_consistency(results: list[dict], config: Any, out: str) -> str:
    rows = sorted(_zoo(results) + [r for r in results if r["kind"] == "stages"],
                  key=lambda r: -r["shift_consistency"]["mean"])
    fig, ax = plt.subplots(figsize=(5, 0.16 * len(rows) + 1.2))
    _bars(ax, rows, "shift_consistency",
          f"shift consistency (shifts up to {config.consistency_max_shift} px)")
    ax.set_xlim(min(r["shift_consistency"]["mean"] for r in rows) - 0.05, 1.0)
    return _save(fig, out, "shift_consistency.png")


def fig_robustness(results: list[dict], config: Any, out: str) -> str:
    rows = _zoo(results, _heads(results)[0]) if _zoo(results) else []
    sweeps = (("gaussian_noise", config.gaussian_sigmas, "Gaussian noise sigma"),
              ("salt_and_pepper", config.salt_pepper, "salt-and-pepper fraction"),
              ("rotation", config.rotations, "rotation (degrees)"),
              ("scaling", config.scalings, "zoom factor"))
    fig, axes = plt.subplots(2, 2, figsize=(8, 6))
    for ax, (key, xs, label) in zip(axes.ravel(), sweeps, strict=True):
        _curves(ax, rows, key, list(xs), label, label)
    axes[0][0].legend(fontsize=6, ncol=2)
    return _save(fig, out, "robustness.png")


def _grid_rows(results: list[dict], arrays: dict, key: str, limit: int = 9) -> list[dict]:
    rows = [r for r in _zoo(results, _heads(results)[0]) if key in arrays.get(r["name"], {})]
    return rows[:limit]


def fig_erf(results: list[dict], arrays: dict, out: str) -> str | None:
    rows = _grid_rows(results, arrays, "erf") + [
        r for r in results if r["kind"] == "stages" and "erf" in arrays.get(r["name"], {})]
    if not rows:
        return None
    cols = min(len(rows), 6)
    lines = -(-len(rows) // cols)
    fig, axes = plt.subplots(lines, cols, figsize=(1.6 * cols, 1.8 * lines), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, r in zip(axes.ravel(), rows, strict=False):
        ax.imshow(np.sqrt(arrays[r["name"]]["erf"]), cmap="magma")
        ax.set_title(f"{r['name']}\n90%: {r['erf_area90']} px", fontsize=7)
    return _save(fig, out, "erf.png")


def fig_gradcam(results: list[dict], arrays: dict, images: np.ndarray, out: str) -> str | None:
    rows = _grid_rows(results, arrays, "gradcam")
    if not rows:
        return None
    n = arrays[rows[0]["name"]]["gradcam"].shape[0]
    fig, axes = plt.subplots(len(rows) + 1, n, figsize=(1.1 * n, 1.15 * (len(rows) + 1)),
                             squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for j in range(n):
        axes[0][j].imshow(images[j, ..., 0], cmap="gray")
    axes[0][0].set_ylabel("input", fontsize=7)
    for i, r in enumerate(rows, start=1):
        cams = arrays[r["name"]]["gradcam"]
        for j in range(n):
            axes[i][j].imshow(images[j, ..., 0], cmap="gray")
            axes[i][j].imshow(cams[j], cmap="jet", alpha=0.5, vmin=0, vmax=1)
        axes[i][0].set_ylabel(r["downsample"], fontsize=7)
    return _save(fig, out, "gradcam.png")


def fig_cost(results: list[dict], out: str) -> str:
    rows = _zoo(results) + [r for r in results if r["kind"] == "stages"]
    fig, axes = plt.subplots(1, 2, figsize=(8, 0.16 * len(rows) + 1.2))
    for ax, key, title in ((axes[0], "params", "parameters"),
                           (axes[1], "flops", "XLA FLOPs per image (forward)")):
        ax.barh(range(len(rows)), [r[key] for r in rows], color="tab:green")
        ax.set_xscale("log")
        ax.set_yticks(range(len(rows)), [r["name"] for r in rows], fontsize=6)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
    return _save(fig, out, "cost.png")


def fig_gap(results: list[dict], out: str) -> str:
    rows = _zoo(results) + [r for r in results if r["kind"] == "stages"]
    fig, ax = plt.subplots(figsize=(5, 0.16 * len(rows) + 1.2))
    _bars(ax, rows, "gap", "train - test accuracy (fixed budget)")
    return _save(fig, out, "train_test_gap.png")


def fig_stages(results: list[dict], out: str) -> str | None:
    rows = sorted((r for r in results if r["kind"] == "stages"), key=lambda r: r["stages"])
    if not rows:
        return None
    ks = [r["stages"] for r in rows]
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for key, color in (("test_accuracy", "tab:blue"), ("train_accuracy", "tab:orange")):
        ax.errorbar(ks, [r[key]["mean"] for r in rows], [r[key]["std"] for r in rows],
                    fmt="-o", ms=4, color=color, label=key.replace("_", " "), capsize=3)
    ax.set_xlabel("2x2 max-pooling stages (PoolStack)", fontsize=8)
    ax.set_ylabel("accuracy", fontsize=8)
    ax.set_xticks(ks)
    ax.grid(alpha=0.3)
    twin = ax.twinx()
    twin.plot(ks, [r["flops"] / 1e6 for r in rows], "--s", ms=3, color="gray",
              label="MFLOPs / image")
    twin.set_ylabel("MFLOPs per image", fontsize=8)
    ax.legend(fontsize=7, loc="lower left")
    twin.legend(fontsize=7, loc="lower right")
    return _save(fig, out, "pooling_stages.png")


def augment_pairs(results: list[dict]) -> list[tuple[dict, dict]]:
    """(un-augmented, shift-augmented) result pairs of the augmentation experiment."""
    by_name = {r["name"]: r for r in results}
    pairs = []
    for r in results:
        if r["kind"] == "augment":
            base = by_name.get(f"{r['downsample']}/{r['head']}")
            if base is not None:
                pairs.append((base, r))
    return pairs


def fig_augment(results: list[dict], config: Any, out: str) -> str | None:
    pairs = augment_pairs(results)
    if not pairs:
        return None
    last = len(config.shifts) - 1
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.3 * len(pairs) + 1.4))
    y = np.arange(len(pairs))
    for ax, key, i, title in ((axes[0], "shift_consistency", None, "shift consistency"),
                              (axes[1], "shift_accuracy", last,
                               f"accuracy at a {config.shifts[last]} px shift")):
        for offset, which, color in ((-0.2, 0, "tab:gray"), (0.2, 1, "tab:blue")):
            m = [p[which][key]["mean"] if i is None else p[which][key]["mean"][i]
                 for p in pairs]
            s = [p[which][key]["std"] if i is None else p[which][key]["std"][i]
                 for p in pairs]
            label = "no augmentation" if which == 0 else (
                f"random shifts up to {pairs[0][1]['max_shift_train']} px")
            ax.barh(y + offset, m, height=0.38, xerr=s, color=color, label=label)
        ax.set_yticks(y, [p[0]["name"] for p in pairs], fontsize=7)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3, axis="x")
    # beside the plots: inside, it covered the last bars
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return _save(fig, out, "augmentation.png")


def fig_textures(results: list[dict], out: str) -> str | None:
    rows = [r for r in results if r["kind"] == "texture"]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(5, 0.22 * len(rows) + 1.2))
    _bars(ax, rows, "test_accuracy", "test accuracy on the texture dataset")
    return _save(fig, out, "textures.png")


def _kept(out: str, name: str) -> str | None:
    return name if os.path.exists(os.path.join(out, name)) else None


def make_figures(results: list[dict], arrays: dict | None, config: Any,
                 out: str) -> dict[str, str]:
    """Writes every figure into `out`; returns {topic: file name} (absent: nothing to plot).

    `arrays=None` (a re-render without the run's arrays.npz) keeps the ERF and Grad-CAM
    PNGs already in `out` instead of drawing them.
    """
    from poolnets.data import load_split

    os.makedirs(out, exist_ok=True)
    figs = {}
    if _zoo(results):
        figs["shift"] = fig_shift(results, config, out)
        figs["robustness"] = fig_robustness(results, config, out)
        if arrays is None:
            figs["gradcam"] = _kept(out, "gradcam.png")
        else:
            test = load_split(config.dataset, "test", config.data_dir)
            figs["gradcam"] = fig_gradcam(results, arrays, test.images, out)
    if results:
        figs["consistency"] = fig_consistency(results, config, out)
        figs["cost"] = fig_cost(results, out)
        figs["gap"] = fig_gap(results, out)
        figs["erf"] = _kept(out, "erf.png") if arrays is None else fig_erf(results, arrays, out)
        figs["stages"] = fig_stages(results, out)
        figs["augmentation"] = fig_augment(results, config, out)
        figs["textures"] = fig_textures(results, out)
    return {k: v for k, v in figs.items() if v}
