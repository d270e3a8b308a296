"""Windowed pools against PyTorch 2.13 CPU outputs and input gradients recorded by
`tools/make_torch_fixtures_pooling.py` (torch itself is not needed to run this)."""

from __future__ import annotations

import functools
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from poolnets.pooling import avg_pool, lp_pool, max_pool, max_pool_with_indices, max_unpool

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "torch_windowed.npz"
DATA = np.load(FIXTURE)
CASES = sorted(int(k.split("/")[0]) for k in DATA.files if k.endswith("/config"))


def _case(i):
    cfg = json.loads(str(DATA[f"{i}/config"]))
    return cfg, {k.split("/", 1)[1]: DATA[k] for k in DATA.files if k.startswith(f"{i}/")}


def _vjp(fn, x, g):
    out, pullback = jax.vjp(fn, jnp.asarray(x))
    return out, pullback(jnp.asarray(g))[0]


def _call(cfg):
    n = len(cfg["window_shape"])
    common = dict(window_shape=tuple(cfg["window_shape"]), strides=tuple(cfg["strides"]),
                  padding=tuple(cfg["padding"]), ceil_mode=cfg["ceil_mode"])
    if cfg["op"] == "max_pool":
        return functools.partial(max_pool, dilation=tuple(cfg["dilation"]), **common), n
    if cfg["op"] == "avg_pool":
        return functools.partial(avg_pool, count_include_pad=cfg["count_include_pad"],
                                 divisor_override=cfg["divisor_override"], **common), n
    return functools.partial(lp_pool, p=cfg["p"], **common), n


def test_fixture_is_present_and_covers_the_options():
    configs = [_case(i)[0] for i in CASES]
    assert len(configs) >= 60
    assert {c["op"] for c in configs} == {"max_pool", "avg_pool", "lp_pool"}
    assert any(c["ceil_mode"] for c in configs)
    assert any(c.get("divisor_override") for c in configs)
    assert any(np.isnan(DATA[f"{i}/x"]).any() for i in CASES)


def _max_extras(kwargs, unpool_size, x, out, unpool_g):
    """max_pool_with_indices, then max_unpool of torch's pooled values and its VJP."""
    values, indices = max_pool_with_indices(x, **kwargs)
    if unpool_size is None:
        return values, indices, None, None
    unpool = functools.partial(
        max_unpool, indices=indices, window_shape=kwargs["window_shape"],
        strides=kwargs["strides"], padding=kwargs["padding"], output_size=unpool_size)
    up, up_grad = _vjp(unpool, out, unpool_g)
    return values, indices, up, up_grad


@pytest.mark.parametrize("i", CASES)
def test_forward_and_input_gradient_match_torch(i):
    # One jitted program per case: cheaper than compiling every primitive eagerly.
    cfg, case = _case(i)
    fn, _ = _call(cfg)
    out, grad = jax.jit(functools.partial(_vjp, fn))(case["x"], case["g"])
    np.testing.assert_allclose(np.asarray(out), case["out"], rtol=1e-5, atol=1e-5,
                               err_msg=str(cfg))
    np.testing.assert_allclose(np.asarray(grad), case["grad"], rtol=1e-5, atol=1e-5,
                               err_msg=str(cfg))
    if cfg["op"] != "max_pool":
        return
    size = tuple(int(v) for v in case["unpool_size"]) if "unpool_size" in case else None
    extras = jax.jit(functools.partial(_max_extras, fn.keywords, size))
    values, indices, up, up_grad = extras(case["x"], case["out"], case.get("unpool_g"))
    np.testing.assert_array_equal(np.asarray(indices), case["indices"], err_msg=str(cfg))
    np.testing.assert_array_equal(np.asarray(values), case["out"])
    if size is not None:
        np.testing.assert_array_equal(np.asarray(up), case["unpool_out"], err_msg=str(cfg))
        np.testing.assert_allclose(np.asarray(up_grad), case["unpool_grad"], rtol=1e-6,
                                   err_msg=str(cfg))
