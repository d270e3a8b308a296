"""The generated verdicts of the texture and augmentation claims, and the detection of
variants whose numbers repeat another's, on hand-made results with known answers."""

from poolnets.report.claims import claim_augmentation, claim_edges_textures
from poolnets.report.config import default_config
from poolnets.report.results import Results, identical_variants
from poolnets.report.sweep import train_config, variants

CFG = {"shifts": [0, 4, 8], "dataset": "digits"}


def _stat(runs):
    import numpy as np

    arr = np.asarray(runs, float)
    return {"mean": arr.mean(0).tolist(), "std": arr.std(0).tolist(), "runs": runs}


def _row(name, kind="zoo", acc=(0.9, 0.9, 0.9), consistency=(0.5, 0.5, 0.5), **extra):
    ds, head = name.split(":")[-1].split("+")[0].split("/")
    return {"name": name, "kind": kind, "downsample": ds, "head": head, "params": 100,
            "test_accuracy": _stat(list(acc)), "train_accuracy": _stat(list(acc)),
            "shift_consistency": _stat(list(consistency)),
            "shift_accuracy": _stat([[a, a - 0.1, a - 0.2] for a in acc]),
            "gaussian_noise": _stat([[a] for a in acc]), "rotation": _stat([[a] for a in acc]),
            "scaling": _stat([[a] for a in acc]), **extra}


def test_textures_half_contradicts_when_max_wins_on_textures():
    rows = [_row("max/flatten", acc=(0.98, 0.98, 0.99)), _row("avg/flatten", acc=(0.96,) * 3),
            _row("textures:max/flatten", "texture", acc=(0.95, 0.96, 0.95),
                 dataset="textures"),
            _row("textures:avg/flatten", "texture", acc=(0.90, 0.91, 0.90),
                 dataset="textures")]
    text = claim_edges_textures(Results(rows), CFG)
    assert text.startswith("**edges: supports; textures: contradicts**")
    assert "avg is lower" in text
    only_digits = claim_edges_textures(Results(rows[:2]), CFG)
    assert only_digits.startswith("**edges half only: supports**")
    assert "Digits (strokes, i.e. edges): max 0.983" in only_digits
    fashion = claim_edges_textures(Results(rows[:2]), {**CFG, "dataset": "fashion_mnist"})
    assert "Fashion-MNIST (photos of clothes: outlines, i.e. edges, and some fabric " \
           "texture): max 0.983" in fashion and "Digits" not in fashion


def test_augmentation_verdict_compares_gain_with_architecture_spread():
    base = [_row("max/flatten", consistency=(0.30, 0.31, 0.29)),
            _row("blur/flatten", consistency=(0.40, 0.41, 0.39))]
    big_gain = [_row("max/flatten+shift4", "augment", consistency=(0.80, 0.81, 0.79),
                     max_shift_train=4),
                _row("blur/flatten+shift4", "augment", consistency=(0.85, 0.86, 0.84),
                     max_shift_train=4)]
    text = claim_augmentation(Results(base + big_gain), CFG)
    assert text.startswith("**augmentation contributes more**")
    assert "max 0.300 -> 0.800 (higher;" in text and "Spread between architectures: 0.100" in text
    small_gain = [_row("max/flatten+shift4", "augment", consistency=(0.32, 0.33, 0.31),
                       max_shift_train=4),
                  _row("blur/flatten+shift4", "augment", consistency=(0.42, 0.43, 0.41),
                       max_shift_train=4)]
    assert claim_augmentation(Results(base + small_gain), CFG).startswith(
        "**the architecture contributes more**")
    assert claim_augmentation(Results(base), CFG) is None


def test_identical_variants_named_with_known_reason():
    rows = [_row("avg/flatten", acc=(0.91, 0.92, 0.93)),
            _row("wavelet/flatten", acc=(0.91, 0.92, 0.93)),
            _row("max/flatten", acc=(0.95, 0.96, 0.97)),
            _row("lp/flatten", acc=(0.95, 0.96, 0.97))]
    notes = identical_variants(Results(rows))
    assert len(notes) == 2
    assert "`wavelet/flatten` gives exactly the numbers of `avg/flatten`" in notes[0]
    assert "2x2 average pooling" in notes[0]
    assert "`lp/flatten`" in notes[1] and "no known identity" in notes[1]


def test_recipe_per_head_and_experiment():
    config = default_config()
    todo = variants(config)
    epochs = {(v["kind"], v.get("head")): train_config(v, config).num_epochs for v in todo}
    assert epochs[("zoo", "flatten")] == config.num_epochs
    assert epochs[("zoo", "avg")] == dict(config.head_epochs)["avg"]
    assert epochs[("stages", "avg")] == dict(config.head_epochs)["avg"]
    assert epochs[("texture", "flatten")] == config.texture_epochs
    shifted = [v for v in todo if v["kind"] == "augment"]
    shifts = {train_config(v, config).augment.max_shift for v in shifted}
    assert shifts == set(config.augment_shifts)
    assert all(train_config(v, config).augment.max_shift == 0 for v in todo if v["kind"] == "zoo")
