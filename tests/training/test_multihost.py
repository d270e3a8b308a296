"""A real two-process run on 127.0.0.1 (jax.distributed, CPU collectives over gloo): each
process feeds its half of every global batch, and both end where one process does."""

import json
import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import pytest

HERE = pathlib.Path(__file__).resolve().parent

CHILD = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from conftest import TinyCNN, load_config
    from poolnets.training import train_and_evaluate
    from poolnets.training.setup import initialize_distributed

    workdir, data_dir, address, num, pid = sys.argv[2:7]
    config = load_config()
    config.data_dir = data_dir
    config.batch_size = 32
    config.eval_batch_size = 64
    config.num_steps = 6
    config.log_every = 2
    config.checkpoint_every_steps = 3
    config.learning_rate = 0.1
    config.warmup_epochs = 0.0
    if address != "-":
        config.distributed.coordinator_address = address
        config.distributed.num_processes = int(num)
        config.distributed.process_id = int(pid)
        assert initialize_distributed(config)
    import jax
    summary = train_and_evaluate(config, workdir, model=TinyCNN, show_progress=False)
    print(json.dumps({"process": jax.process_index(), "devices": jax.device_count(),
                      "test_loss": summary["test_loss"],
                      "test_accuracy": summary["test_accuracy"], "steps": summary["steps"]}))
    """
)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_agree_with_one(tmp_path, digits_dir):
    from poolnets.data import digits

    digits.prepare(digits_dir)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    address = f"127.0.0.1:{_free_port()}"
    procs = [subprocess.Popen(
        [sys.executable, "-c", CHILD, str(HERE), str(tmp_path / "multi"), digits_dir, address,
         "2", str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for i in range(2)]
    single = subprocess.run(
        [sys.executable, "-c", CHILD, str(HERE), str(tmp_path / "single"), digits_dir, "-",
         "1", "0"], capture_output=True, text=True, env=env, timeout=600)
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    assert single.returncode == 0, single.stderr[-3000:]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    reference = json.loads(single.stdout.strip().splitlines()[-1])
    assert [r["process"] for r in results] == [0, 1]
    assert all(r["devices"] == 2 for r in results) and reference["devices"] == 1
    for r in results:
        assert r["steps"] == reference["steps"] == 6
        assert r["test_accuracy"] == pytest.approx(reference["test_accuracy"], abs=1 / 355)
        assert r["test_loss"] == pytest.approx(reference["test_loss"], rel=1e-4)
    summary = json.loads((tmp_path / "multi" / "summary.json").read_text())
    assert summary["num_processes"] == 2
    steps = sorted(os.listdir(tmp_path / "multi" / "checkpoints"))
    assert steps == ["3", "6"]
