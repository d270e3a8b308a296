"""The measurements of one report: every variant trained per seed, then probed.

A variant is (downsample, head) on the configured model, or a PoolStack with k pooled
stages. The probe set (shifted, noisy, rotated, scaled test images) is built once and shared
by all variants, so every variant sees exactly the same images.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

import jax
import numpy as np
from flax import nnx

from poolnets.analysis import cost, generalisation, receptive_field, robustness, shift
from poolnets.analysis.fit import fit_seeds, make_predict, predict_in_chunks, unstack
from poolnets.analysis.gradcam import grad_cam
from poolnets.analysis.stages import PoolStack, pool_stack_layers
from poolnets.training.state import merge


@dataclasses.dataclass
class Probe:
    """Named image sets (each (N, H, W, C)) concatenated; `slices[name]` locates each."""

    images: np.ndarray
    slices: dict[str, slice]


def build_probe(test_images: np.ndarray, config: Any, key: jax.Array) -> Probe:
    """Every evaluation condition of the report applied to the test images."""
    sets: dict[str, np.ndarray] = {"clean": test_images}
    aliases = {"shift/0": "clean"}
    for s in config.shifts:
        if s != 0:
            sets[f"shift/{s}"] = shift.shift_images(test_images, 0, s)
    k_shift, k_noise, k_sp = jax.random.split(key, 3)
    pairs = shift.random_shift_pairs(k_shift, len(test_images), config.consistency_max_shift,
                                     config.consistency_draws)
    for d, draw in enumerate(pairs):
        sets[f"pair/{d}/a"] = shift.shifted_batch(test_images, draw[:, 0])
        sets[f"pair/{d}/b"] = shift.shifted_batch(test_images, draw[:, 1])
    sweeps = {"gaussian_noise": (config.gaussian_sigmas, k_noise),
              "salt_and_pepper": (config.salt_pepper, k_sp),
              "rotation": (config.rotations, None), "scaling": (config.scalings, None)}
    for name, (severities, key_) in sweeps.items():
        keys = jax.random.split(key_, len(severities)) if key_ is not None else [None] * len(
            severities)
        for sev, k in zip(severities, keys, strict=True):
            if sev == (1.0 if name == "scaling" else 0.0):
                aliases[f"{name}/{sev}"] = "clean"  # the identity: reuse the clean images
            else:
                sets[f"{name}/{sev}"] = robustness.corrupt(name, test_images, sev, k)
    slices, start = {}, 0
    for name, arr in sets.items():
        slices[name] = slice(start, start + len(arr))
        start += len(arr)
    for name, target in aliases.items():
        slices[name] = slices[target]
    return Probe(np.concatenate(list(sets.values())).astype(np.float32), slices)


def _stats(values: list[float] | np.ndarray) -> dict[str, Any]:
    arr = np.asarray(values, np.float64)
    return {"mean": arr.mean(0).tolist(), "std": arr.std(0).tolist(), "runs": arr.tolist()}


def train_config(variant: dict, config: Any) -> Any:
    """The training config (`poolnets.training.defaults.base_config` fields) of one variant:
    the sweep's recipe, with the epochs of its head (`config.head_epochs`) and its own
    train-time shift (augmentation variants); the rest as train.py's defaults (cosine
    schedule after 1 warmup epoch, momentum 0.9, Nesterov, no label smoothing)."""
    from poolnets.training.defaults import base_config

    epochs = dict(config.head_epochs).get(variant.get("head"), config.num_epochs)
    if variant["kind"] == "texture" and config.texture_epochs:
        epochs = config.texture_epochs
    c = base_config()
    c.dataset = variant.get("dataset", config.dataset)
    c.num_epochs, c.num_steps, c.batch_size = epochs, config.num_steps, config.batch_size
    c.optimizer, c.learning_rate = config.optimizer, config.learning_rate
    c.weight_decay = config.weight_decay
    c.augment.max_shift = variant.get("max_shift_train", config.max_shift_train)
    return c


def measure(model: Any, label: dict, data: dict, probe: Probe, config: Any,
            layers: list | None, on_step: Any, fit: Any) -> tuple[dict, dict]:
    """Trains `model` (an NNX build, `rngs -> nnx.Module`) for every seed with the training
    config `fit` and measures it. Returns (numbers, arrays)."""
    train, test = data["train"], data["test"]
    t0 = time.perf_counter()
    graphdef, states, timing = fit_seeds(model, train, list(config.seeds), fit,
                                         num_classes=data["num_classes"],
                                         seed_parallel=config.seed_parallel, on_step=on_step)
    t_eval = time.perf_counter()
    predict = make_predict(graphdef)
    per_seed: dict[str, list] = {k: [] for k in (
        "test_accuracy", "train_accuracy", "gap", "shift_accuracy", "shift_consistency",
        "gaussian_noise", "salt_and_pepper", "rotation", "scaling")}
    clean_classes = []
    for i in range(len(config.seeds)):
        state = unstack(states, i)
        pred = predict_in_chunks(predict, state, probe.images, config.chunk).argmax(-1)
        train_pred = predict_in_chunks(predict, state, train.images, config.chunk).argmax(-1)
        at = {name: pred[s] for name, s in probe.slices.items()}
        clean_classes.append(at["clean"])
        gap = generalisation.gap_from_predictions(train_pred, train.labels, at["clean"],
                                                  test.labels)
        per_seed["test_accuracy"].append(gap["test_accuracy"])
        per_seed["train_accuracy"].append(gap["train_accuracy"])
        per_seed["gap"].append(gap["gap"])
        per_seed["shift_accuracy"].append(
            [float(np.mean(at[f"shift/{s}"] == test.labels)) for s in config.shifts])
        per_seed["shift_consistency"].append(float(np.mean([
            at[f"pair/{d}/a"] == at[f"pair/{d}/b"] for d in range(config.consistency_draws)])))
        for name, sev in (("gaussian_noise", config.gaussian_sigmas),
                          ("salt_and_pepper", config.salt_pepper),
                          ("rotation", config.rotations), ("scaling", config.scalings)):
            per_seed[name].append([float(np.mean(at[f"{name}/{s}"] == test.labels))
                                   for s in sev])
    first = unstack(states, 0)
    net = merge(graphdef, first)  # seed 0's trained model
    image_shape = tuple(test.images.shape[1:])
    fwd = cost.forward_cost(net, image_shape)
    _, peak = cost.peak_activation(net, jax.ShapeDtypeStruct((1, *image_shape), np.float32))
    numbers = {**label, **{k: _stats(v) for k, v in per_seed.items()},
               "params": cost.total_params(first.params),
               "params_per_layer": cost.params_per_layer(first.params),
               "flops": fwd["flops"], "bytes_accessed": fwd["bytes_accessed"],
               "peak_activation": peak, "steps": timing["steps"],
               "epochs": fit.num_epochs if fit.num_steps is None else None,
               "max_shift_train": fit.augment.max_shift,
               "compile_s": round(timing["compile_s"], 2), "train_s": round(timing["train_s"], 2)}
    arrays: dict[str, np.ndarray] = {}
    # ERF and Grad-CAM are drawn for the main sweep and the stages only
    layer = label.get("feature_layer") if label["kind"] in ("zoo", "stages") else None
    if layer:
        erf_x = test.images[: config.erf_images]
        heat = receptive_field.effective_receptive_field(net, erf_x, layer)
        arrays["erf"] = heat
        numbers["erf_area90"] = receptive_field.mass_area(heat, 0.9)
        numbers["erf_support"] = list(receptive_field.support_extent(heat, 1e-12))
        gx = test.images[: config.gradcam_images]
        arrays["gradcam"] = np.asarray(grad_cam(net, gx, layer,
                                                classes=clean_classes[0][:len(gx)]))
    if layers is not None:
        numbers["analytic_rf"] = [dataclasses.asdict(f) for f in
                                  receptive_field.receptive_fields(layers)]
    numbers["eval_s"] = round(time.perf_counter() - t_eval, 2)  # probes, cost, ERF, Grad-CAM
    numbers["wall_s"] = round(time.perf_counter() - t0, 2)
    return numbers, arrays


def variants(config: Any) -> list[dict]:
    """The run order: core downsamples with each head, the stages experiment, the rest of
    the registry, then the train-time shift and texture experiments.

    kind "zoo": (downsample, head) of `config.model` on `config.dataset`, un-augmented;
    "stages": PoolStack with k pooled stages (global-average head, so the avg-head epochs);
    "augment": a zoo variant trained with `max_shift` px random shifts (`augment_shifts`);
    "texture": a zoo variant trained and tested on `config.texture_dataset`.
    """
    from poolnets.report.config import CORE_DOWNSAMPLES, resolve_downsamples

    names = resolve_downsamples(config)
    heads = [config.heads] if isinstance(config.heads, str) else list(config.heads)
    core = [n for n in names if n in CORE_DOWNSAMPLES]
    rest = [n for n in names if n not in CORE_DOWNSAMPLES]
    out = [{"kind": "zoo", "downsample": n, "head": heads[0]} for n in core]
    out += [{"kind": "stages", "stages": int(k), "head": "avg"} for k in config.stages]
    for h in heads[1:]:
        out += [{"kind": "zoo", "downsample": n, "head": h} for n in core]
    for h in heads:
        out += [{"kind": "zoo", "downsample": n, "head": h} for n in rest]
    for shift_px in config.augment_shifts:
        out += [{"kind": "augment", "downsample": n, "head": heads[0],
                 "max_shift_train": int(shift_px)} for n in config.augment_downsamples]
    if config.texture_dataset:
        out += [{"kind": "texture", "downsample": n, "head": h,
                 "dataset": config.texture_dataset}
                for h in config.texture_heads for n in config.texture_downsamples]
    return out


def build(variant: dict, config: Any, num_classes: int, image_shape: tuple[int, ...]
          ) -> tuple[Any, dict, list | None]:
    """(model build `rngs -> nnx.Module`, label for the results, analytic layer chain or
    None) of one variant on images of `image_shape` (*spatial, C)."""
    if variant["kind"] == "stages":
        k = variant["stages"]
        model = functools.partial(PoolStack, num_classes=num_classes,
                                  channels=tuple(config.stage_channels), pooled_stages=k,
                                  in_channels=image_shape[-1])
        label = {"kind": "stages", "name": f"stack{k}", "stages": k,
                 "feature_layer": f"conv{len(config.stage_channels) - 1}"}
        return model, label, pool_stack_layers(len(config.stage_channels), k)
    from poolnets.models import nnx as zoo

    ds, head = variant["downsample"], variant["head"]
    model = functools.partial(zoo.create, config.model, num_classes=num_classes,
                              downsample=ds, head=head, in_channels=image_shape[-1],
                              input_size=tuple(image_shape[:-1]))
    name = f"{ds}/{head}"
    if variant["kind"] == "augment":
        name += f"+shift{variant['max_shift_train']}"
    elif variant["kind"] == "texture":
        name = f"{variant['dataset']}:{name}"
    label = {"kind": variant["kind"], "name": name, "downsample": ds, "head": head,
             "dataset": variant.get("dataset", config.dataset),
             "feature_layer": config.feature_layer}
    # The analytic chain through the feature layer, read from the model's own layers.
    layers = receptive_field.model_layers(nnx.eval_shape(lambda: model(rngs=nnx.Rngs(0))),
                                          image_shape[:-1], upto=config.feature_layer)
    return model, label, layers
