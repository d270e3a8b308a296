"""The report's claims: one function per claim turns results.json into a verdict and the
sentence that supports it (every sentence about a result is computed here)."""

from __future__ import annotations

from collections.abc import Callable

from poolnets.report.results import (
    DATASET_EDGES,
    Results,
    compare,
    fmt,
    have,
    index_of,
    mean,
    rf_text,
    untrained,
)


def claim_cost(R: Results, cfg: dict) -> str | None:
    none, mx, sc = R.get("none"), R.get("max"), R.get("strided_conv")
    if not have(none, mx):
        return None
    text = (f"With the {R.head} head, no pooling has {none['params']:,} parameters and "
            f"{none['flops'] / 1e6:.2f} MFLOPs per image (XLA); max pooling has "
            f"{mx['params']:,} ({none['params'] / mx['params']:.1f}x fewer) and "
            f"{mx['flops'] / 1e6:.2f} MFLOPs ({none['flops'] / mx['flops']:.1f}x fewer); "
            f"largest activation {none['peak_activation']:,} vs {mx['peak_activation']:,} "
            f"values per image.")
    if sc is not None:
        text += (f" strided_conv adds learned weights: {sc['params']:,} parameters, "
                 f"{sc['flops'] / 1e6:.2f} MFLOPs.")
    mx_avg = R.get("max", "avg")
    if mx_avg is not None and R.head != "avg":
        text += (f" The global-average head cuts parameters further, to {mx_avg['params']:,} "
                 "(max pooling).")
    verdict = "supports" if mx["params"] < none["params"] and mx["flops"] < none["flops"] else (
        "contradicts")
    return f"**{verdict}**. {text}"


def claim_shift(R: Results, cfg: dict) -> str | None:
    none, mx = R.get("none"), R.get("max")
    if not have(none, mx):
        return None
    if (stub := untrained(none, mx)) is not None:
        return stub
    trained = R.trained()
    best = max(trained, key=lambda r: mean(r, "shift_consistency")) if trained else None
    worst = min(trained, key=lambda r: mean(r, "shift_consistency")) if trained else None
    last = len(cfg["shifts"]) - 1
    verdict = {"higher": "supports", "lower": "contradicts",
               "indistinguishable": "no measurable effect"}[
        compare(mx, none, "shift_consistency")]
    text = (f"Shift consistency (two random shifts up to {cfg['consistency_max_shift']} px): "
            f"max {fmt(mx, 'shift_consistency')} vs none {fmt(none, 'shift_consistency')}. "
            f"Accuracy at a {cfg['shifts'][last]} px shift: max {fmt(mx, 'shift_accuracy', last)}"
            f", none {fmt(none, 'shift_accuracy', last)} (unshifted: "
            f"{mean(mx, 'shift_accuracy', 0):.3f} / {mean(none, 'shift_accuracy', 0):.3f}).")
    if best is not None:
        text += (f" Most consistent trained variant: {best['name']} "
                 f"({mean(best, 'shift_consistency'):.3f}); least: {worst['name']} "
                 f"({mean(worst, 'shift_consistency'):.3f}).")
        exact = [r["name"] for r in trained if min(r["shift_consistency"]["runs"]) == 1.0]
        text += (f" Fully consistent in every seed: {', '.join(exact)}." if exact
                 else " No trained variant is fully consistent.")
    return f"**{verdict}**. {text}"


def claim_rotation_scale(R: Results, cfg: dict) -> str | None:
    none, mx = R.get("none"), R.get("max")
    if not have(none, mx):
        return None
    if (stub := untrained(none, mx)) is not None:
        return stub
    ir, lo, hi = len(cfg["rotations"]) - 1, 0, len(cfg["scalings"]) - 1
    parts = []
    for key, i, what in (("rotation", ir, f"{cfg['rotations'][ir]:g}° rotation"),
                         ("scaling", lo, f"zoom {cfg['scalings'][lo]:g}"),
                         ("scaling", hi, f"zoom {cfg['scalings'][hi]:g}")):
        parts.append((what, compare(mx, none, key, i),
                      f"{what}: max {fmt(mx, key, i)}, none {fmt(none, key, i)}"))
    verdicts = {c for _, c, _ in parts}
    verdict = ("supports" if verdicts == {"higher"} else "contradicts" if verdicts == {"lower"}
               else "mixed: " + ", ".join(f"{w} {c}" for w, c, _ in parts))
    return f"**{verdict}** (max vs none). " + "; ".join(t for _, _, t in parts) + "."


def claim_overfitting(R: Results, cfg: dict) -> str | None:
    none, mx = R.get("none"), R.get("max")
    if not have(none, mx):
        return None
    if (stub := untrained(none, mx)) is not None:
        return stub
    c = compare(mx, none, "gap")
    verdict = {"lower": "supports", "higher": "contradicts",
               "indistinguishable": "no measurable effect"}[c]
    return (f"**{verdict}** at this budget ({mx['steps']} steps). Train-test gap: max "
            f"{fmt(mx, 'gap')} (train {mean(mx, 'train_accuracy'):.3f}, test "
            f"{mean(mx, 'test_accuracy'):.3f}); none {fmt(none, 'gap')} (train "
            f"{mean(none, 'train_accuracy'):.3f}, test {mean(none, 'test_accuracy'):.3f}).")


def claim_noise(R: Results, cfg: dict) -> str | None:
    none, mx, avg = R.get("none"), R.get("max"), R.get("avg")
    ig, isp = index_of(list(cfg["gaussian_sigmas"]), 0.3), index_of(list(cfg["salt_pepper"]), 0.1)
    if not have(none, mx) or ig is None or isp is None:
        return None
    if (stub := untrained(none, mx)) is not None:
        return stub
    cg, csp = compare(mx, none, "gaussian_noise", ig), compare(mx, none, "salt_and_pepper", isp)
    verdict = ("supports" if {cg, csp} == {"higher"} else "contradicts"
               if {cg, csp} == {"lower"} else f"mixed: Gaussian {cg}, salt-and-pepper {csp}")
    text = (f"Accuracy at Gaussian sigma 0.3: max {fmt(mx, 'gaussian_noise', ig)}, none "
            f"{fmt(none, 'gaussian_noise', ig)}; at 10% salt-and-pepper: max "
            f"{fmt(mx, 'salt_and_pepper', isp)}, none {fmt(none, 'salt_and_pepper', isp)}.")
    if avg is not None:
        text += (f" avg: {fmt(avg, 'gaussian_noise', ig)} and "
                 f"{fmt(avg, 'salt_and_pepper', isp)}.")
    return f"**{verdict}** (max vs none). {text}"


def claim_receptive_field(R: Results, cfg: dict) -> str | None:
    none, mx = R.get("none"), R.get("max")
    if not have(none, mx) or "erf_area90" not in mx:
        return None
    if (stub := untrained(none, mx)) is not None:
        return stub
    verdict = "supports" if mx.get("erf_area90", 0) > none.get("erf_area90", 0) else (
        "contradicts for the effective field")
    text = (f"Analytic receptive field of a unit after the last downsampling layer: max "
            f"{rf_text(mx)} px, none {rf_text(none)} px. Effective receptive field (pixels "
            f"holding 90% of |d unit / d input|, trained seed 0): max {mx['erf_area90']}, none "
            f"{none['erf_area90']}.")
    if R.stages and "erf_area90" in R.stages[0]:
        text += " PoolStack ERF area by pooled stages: " + ", ".join(
            f"{r['stages']}: {r['erf_area90']}" for r in R.stages) + "."
    return f"**{verdict}**. {text}"


_VERDICT = {"higher": "supports", "lower": "contradicts",
            "indistinguishable": "no measurable difference"}


def claim_edges_textures(R: Results, cfg: dict) -> str | None:
    mx, avg = R.get("max"), R.get("avg")
    if not have(mx, avg):
        return None
    if (stub := untrained(mx, avg)) is not None:
        return stub
    edges = compare(mx, avg, "test_accuracy")
    what = DATASET_EDGES.get(cfg["dataset"], f"`{cfg['dataset']}`")
    text = (f"{what}: max {fmt(mx, 'test_accuracy')} vs avg "
            f"{fmt(avg, 'test_accuracy')} test accuracy ({R.head} head): max is {edges}.")
    by_name = {r["name"]: r for r in R.texture}
    tmx = next((r for r in R.texture if r["downsample"] == "max"), None)
    tavg = tmx and by_name.get(tmx["name"].replace(":max/", ":avg/"))
    if tmx is None or tavg is None:
        return (f"**edges half only: {_VERDICT[edges]}**. {text} The texture half is not "
                "measured in this run (config.texture_dataset).")
    textures = compare(tavg, tmx, "test_accuracy")
    text += (f" Textures (`{tmx['dataset']}`, class carried by local statistics only): avg "
             f"{fmt(tavg, 'test_accuracy')} vs max {fmt(tmx, 'test_accuracy')}: avg is "
             f"{textures}. All texture variants: " + ", ".join(
                 f"{r['name'].split(':', 1)[1]} {fmt(r, 'test_accuracy')}" for r in sorted(
                     R.texture, key=lambda r: -mean(r, "test_accuracy"))) + ".")
    halves = (_VERDICT[edges], _VERDICT[textures])
    verdict = halves[0] if halves[0] == halves[1] else (
        f"edges: {halves[0]}; textures: {halves[1]}")
    return f"**{verdict}**. {text}"


def claim_augmentation(R: Results, cfg: dict) -> str | None:
    from poolnets.report.figures import augment_pairs

    pairs = augment_pairs(R.zoo + R.augment)
    if not pairs:
        return None
    last = len(cfg["shifts"]) - 1
    if (stub := untrained(*[r for p in pairs for r in p])) is not None:
        return stub
    base = [mean(b, "shift_consistency") for b, _ in pairs]
    aug = [mean(a, "shift_consistency") for _, a in pairs]
    gains = [a - b for b, a in zip(base, aug, strict=True)]
    spread, spread_aug = max(base) - min(base), max(aug) - min(aug)
    px = pairs[0][1]["max_shift_train"]
    verdict = ("augmentation contributes more" if min(gains) > spread else
               "the architecture contributes more" if max(gains) < spread else "both matter")
    rows = "; ".join(
        f"{b['downsample']} {mean(b, 'shift_consistency'):.3f} -> "
        f"{mean(a, 'shift_consistency'):.3f}"
        f" ({compare(a, b, 'shift_consistency')}; accuracy at a {cfg['shifts'][last]} px shift "
        f"{mean(b, 'shift_accuracy', last):.3f} -> {mean(a, 'shift_accuracy', last):.3f}, "
        f"{compare(a, b, 'shift_accuracy', last)}; clean test accuracy "
        f"{mean(b, 'test_accuracy'):.3f} -> {mean(a, 'test_accuracy'):.3f})"
        for b, a in pairs)
    return (f"**{verdict}**. Shift consistency without -> with random train shifts up to "
            f"{px} px: {rows}. Spread between architectures: {spread:.3f} without "
            f"augmentation, {spread_aug:.3f} with it; gain from augmentation "
            f"{min(gains):+.3f} to {max(gains):+.3f}.")


def claim_strided(R: Results, cfg: dict) -> str | None:
    mx, sc = R.get("max"), R.get("strided_conv")
    if not have(mx, sc):
        return None
    if (stub := untrained(mx, sc)) is not None:
        return stub
    ca, cs = compare(sc, mx, "test_accuracy"), compare(sc, mx, "shift_consistency")
    verdict = ("supports" if ca != "lower" else "contradicts") + f" for accuracy ({ca})"
    return (f"**{verdict}**; shift consistency {cs}. strided_conv test "
            f"{fmt(sc, 'test_accuracy')}, consistency {fmt(sc, 'shift_consistency')}; max "
            f"{fmt(mx, 'test_accuracy')}, {fmt(mx, 'shift_consistency')}; strided_conv has "
            f"{sc['params'] - mx['params']:+,} parameters.")


def claim_overpooling(R: Results, cfg: dict) -> str | None:
    if len(R.stages) < 2:
        return None
    best = max(R.stages, key=lambda r: mean(r, "test_accuracy"))
    last = R.stages[-1]
    c = compare(last, best, "test_accuracy") if last is not best else "indistinguishable"
    verdict = "supports" if c == "lower" else "no measurable loss"
    return (f"**{verdict}** (PoolStack, {best['params']:,} parameters for every k). Test "
            "accuracy by pooled stages: " + ", ".join(
                f"{r['stages']}: {fmt(r, 'test_accuracy')}" for r in R.stages)
            + f". Best k = {best['stages']}" + (
                f"; k = {last['stages']} (most pooling) vs the best: {c}." if last is not best
                else ", the most pooling measured; 0 stages was not run (see config.stages)."
                if 0 not in [r["stages"] for r in R.stages] else ", the most pooling measured."))


def claim_antialias(R: Results, cfg: dict) -> str | None:
    mx, blur = R.get("max"), R.get("blur")
    if not have(mx, blur):
        return None
    if (stub := untrained(mx, blur)) is not None:
        return stub
    c = compare(blur, mx, "shift_consistency")
    verdict = {"higher": "supports", "lower": "contradicts",
               "indistinguishable": "no measurable effect"}[c]
    return (f"**{verdict}**. Shift consistency blur {fmt(blur, 'shift_consistency')} vs max "
            f"{fmt(mx, 'shift_consistency')}; test accuracy {fmt(blur, 'test_accuracy')} vs "
            f"{fmt(mx, 'test_accuracy')}.")


def claim_gap_head(R: Results, cfg: dict) -> str | None:
    flat, gap = R.get("max", "flatten"), R.get("max", "avg")
    if not have(flat, gap):
        return None
    if (stub := untrained(flat, gap)) is not None:
        return stub
    ca = compare(gap, flat, "test_accuracy")
    cs = compare(gap, flat, "shift_consistency")
    trained = {h: len(R.trained(h)) for h in ("flatten", "avg")}
    total = {h: len([r for r in R.zoo if r["head"] == h]) for h in ("flatten", "avg")}
    return (f"**parameters: {flat['params'] / gap['params']:.1f}x fewer; accuracy {ca}; shift "
            f"consistency {cs}** (max pooling, global-average vs flatten head). Test "
            f"{fmt(gap, 'test_accuracy')} vs {fmt(flat, 'test_accuracy')}; consistency "
            f"{fmt(gap, 'shift_consistency')} vs {fmt(flat, 'shift_consistency')}; "
            f"{gap['params']:,} vs {flat['params']:,} parameters; trained {gap['steps']} vs "
            f"{flat['steps']} steps (the avg head needs the longer budget to learn at all). "
            "Variants that trained: "
            f"{trained['avg']}/{total['avg']} with the avg head, {trained['flatten']}/"
            f"{total['flatten']} with flatten.")


CLAIMS: list[tuple[str, str, Callable, str]] = [
    ("Pooling cuts computation and parameters", "parameters, XLA FLOPs per image, largest "
     "activation", claim_cost, "cost"),
    ("Pooling gives translation invariance", "shift consistency (Zhang 2019); accuracy vs "
     "shift", claim_shift, "shift"),
    ("...and a little invariance to rotation and scale", "accuracy under rotation / zoom",
     claim_rotation_scale, "robustness"),
    ("Pooling fights overfitting", "train-test accuracy gap at a fixed budget",
     claim_overfitting, "gap"),
    ("Pooling reduces noise", "accuracy under Gaussian and salt-and-pepper noise",
     claim_noise, "robustness"),
    ("Pooling widens receptive fields", "analytic RF; effective RF (Luo et al. 2016)",
     claim_receptive_field, "erf"),
    ("Max suits edges, average suits textures", "test accuracy max vs avg on {data} and on "
     "procedural textures",
     claim_edges_textures, "textures"),
    ("Shift invariance comes from pooling, not from data augmentation",
     "shift consistency and accuracy vs shift, trained with vs without random shifts",
     claim_augmentation, "augmentation"),
    ("Strided convolutions can replace pooling", "accuracy and consistency, strided_conv vs "
     "max", claim_strided, "consistency"),
    ("Over-pooling loses detail", "accuracy vs number of pooling stages", claim_overpooling,
     "stages"),
    ("A global-average head (Lin et al. 2014) saves parameters and adds invariance",
     "max pooling with avg vs flatten head", claim_gap_head, "consistency"),
    ("Blurring before subsampling restores shift invariance (Zhang 2019)",
     "shift consistency, blur vs max", claim_antialias, "consistency"),
]


