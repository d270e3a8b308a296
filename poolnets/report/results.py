"""Measured variants (results.json rows), their formatting, and the comparison rule every
verdict uses."""

from __future__ import annotations

import math

TRAINED = 0.5  # variants below this mean test accuracy did not learn within the budget


def mean(r: dict, key: str, i: int | None = None) -> float:
    v = r[key]["mean"]
    return v[i] if i is not None else v


def std(r: dict, key: str, i: int | None = None) -> float:
    v = r[key]["std"]
    return v[i] if i is not None else v


def fmt(r: dict, key: str, i: int | None = None, digits: int = 3) -> str:
    return f"{mean(r, key, i):.{digits}f} ± {std(r, key, i):.{digits}f}"


def compare(a: dict, b: dict, key: str, i: int | None = None) -> str:
    """"higher", "lower" or "indistinguishable": a's mean vs b's, where a difference counts
    only beyond 2 standard errors of the difference (and at least 0.005)."""
    n = max(len(a[key]["runs"]), 1)
    diff = mean(a, key, i) - mean(b, key, i)
    se = math.sqrt((std(a, key, i) ** 2 + std(b, key, i) ** 2) / n)
    if abs(diff) <= max(2 * se, 0.005):
        return "indistinguishable"
    return "higher" if diff > 0 else "lower"


class Results:
    """Lookup of measured variants by name ("max/flatten", "stack2")."""

    def __init__(self, results: list[dict]):
        self.by_name = {r["name"]: r for r in results}
        self.zoo = [r for r in results if r["kind"] == "zoo"]
        self.stages = sorted((r for r in results if r["kind"] == "stages"),
                             key=lambda r: r["stages"])
        self.augment = [r for r in results if r["kind"] == "augment"]
        self.texture = [r for r in results if r["kind"] == "texture"]
        heads = list(dict.fromkeys(r["head"] for r in self.zoo))
        self.head = heads[0] if heads else None

    def get(self, downsample: str, head: str | None = None) -> dict | None:
        return self.by_name.get(f"{downsample}/{head or self.head}")

    def trained(self, head: str | None = None) -> list[dict]:
        return [r for r in self.zoo if mean(r, "test_accuracy") >= TRAINED
                and (head is None or r["head"] == head)]


def have(*rows: dict | None) -> bool:
    return all(r is not None for r in rows)


def untrained(*rows: dict) -> str | None:
    """A verdict stub when a compared variant did not learn (its invariances are vacuous)."""
    names = [r["name"] for r in rows if mean(r, "test_accuracy") < TRAINED]
    if not names:
        return None
    return (f"**inconclusive**: {', '.join(names)} did not train within the budget (test "
            f"accuracy below {TRAINED}), so its invariance and robustness are not comparable.")


# How the claims name a report's main dataset (others: its registry name in backticks), and
# what its images are made of, for the "max suits edges" claim.
DATASET_NAMES = {"digits": "digits", "fashion_mnist": "Fashion-MNIST"}
DATASET_EDGES = {"digits": "Digits (strokes, i.e. edges)",
                 "fashion_mnist": "Fashion-MNIST (photos of clothes: outlines, i.e. edges, "
                                  "and some fabric texture)"}


def dataset_name(cfg: dict) -> str:
    return DATASET_NAMES.get(cfg["dataset"], f"`{cfg['dataset']}`")


def index_of(cfg_values: list, value: float) -> int | None:
    return cfg_values.index(value) if value in cfg_values else None


def rf_text(r: dict) -> str:
    if "analytic_rf" not in r:
        return "n/a"
    return str(r["analytic_rf"][-1]["size"])


# Variants that compute the same function as another one on LeNet-5's even-sized maps, so
# their numbers repeat the other's rather than being an independent result.
KNOWN_IDENTICAL = {
    "wavelet": ("avg", "the Haar LL band with orthonormal=False is the mean of each 2x2 "
                "block, i.e. 2x2 average pooling"),
}


def identical_variants(R: Results) -> list[str]:
    """Sentences naming variants whose per-seed numbers equal another variant's exactly."""
    keys = ("test_accuracy", "train_accuracy", "shift_consistency", "gaussian_noise",
            "rotation", "scaling")
    notes = []
    rows = R.zoo + R.texture + R.augment
    for i, a in enumerate(rows):
        for b in rows[:i]:
            if all(a[k]["runs"] == b[k]["runs"] for k in keys) and a["params"] == b["params"]:
                why = KNOWN_IDENTICAL.get(a["downsample"], (None, None))
                reason = (f": {why[1]}" if why[0] == b["downsample"] else
                          " (no known identity: possibly a coincidence at this budget)")
                notes.append(f"`{a['name']}` gives exactly the numbers of `{b['name']}` in "
                             f"every seed{reason}. It is not an independent result.")
                break
    return notes
