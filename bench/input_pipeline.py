"""Images/s of the input pipeline alone (no train step), to compare with
bench/train_throughput.py. A benchmark, not a test.

    python bench/input_pipeline.py [--data_dir DIR] [--workers 0 1 2 4] [--jpegs 320]
                                   [--epochs 4]

Every row goes through the training loop's path: `poolnets.data.train_batches` (Grain), its
batches placed on the device mesh (put_batch) in Grain's prefetch thread, 2 ahead.
In-memory datasets (digits, and a CIFAR-sized uint8 array): batches cut on the host, read
in this process. ImageNet-style streaming: records are JPEG bytes decoded with PIL (TFDS's
NumPy decoding path also decodes with PIL-class codecs; here the JPEGs are generated,
~500x375 like ImageNet's median image), then random-resized crop 224 + resize, in
`--workers` Grain worker processes (0: this process), each decoding a batch in
`StreamingSplit.threads` threads. Rates exclude each worker's first batch (start-up).
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import time

import jax
import numpy as np

from poolnets.data import Split, default_data_dir, load_split, train_batches
from poolnets.data.sources import StreamingSplit
from poolnets.training.steps import make_mesh, put_batch


def rate(data, batch_size: int, mesh, *, num_steps: int, workers: int = 0) -> float:
    """Images/s of `num_steps` batches of `data` through train_batches + device placement,
    timed once each worker has delivered its first batch (start-up excluded)."""
    batches = iter(train_batches(data, batch_size, seed=0, num_steps=num_steps,
                                 workers=workers, place=functools.partial(put_batch, mesh),
                                 prefetch=2))
    warm = max(1, workers)
    try:
        for _ in range(warm):
            jax.block_until_ready(next(batches))
        t = time.perf_counter()
        for arrays in batches:
            jax.block_until_ready(arrays)
        return (num_steps - warm) * batch_size / (time.perf_counter() - t)
    finally:
        batches.close()


class JpegSource:
    """A list of JPEG-encoded random smooth images, decoded on access like a TFDS source."""

    def __init__(self, count: int, seed: int = 0):
        from PIL import Image

        rng = np.random.default_rng(seed)
        self.blobs = []
        for _ in range(count):
            small = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
            image = Image.fromarray(small).resize((500, 375), Image.BILINEAR)
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=90)
            self.blobs.append(buffer.getvalue())
        self.labels = rng.integers(0, 1000, count)

    def __len__(self) -> int:
        return len(self.blobs)

    def __getitem__(self, i: int) -> dict:
        from PIL import Image

        return {"image": np.asarray(Image.open(io.BytesIO(self.blobs[i])).convert("RGB")),
                "label": int(self.labels[i])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=default_data_dir())
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2, 4],
                        help="Grain worker counts for the JPEG rows")
    parser.add_argument("--jpegs", type=int, default=320, help="JPEGs encoded (one epoch)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs over the JPEGs")
    args = parser.parse_args()
    mesh = make_mesh()
    print(f"# {jax.device_count()} x {jax.devices()[0].device_kind}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| pipeline | batch | workers | images/s |")
    print("|---|---:|---:|---:|")
    digits = load_split("digits", "train", args.data_dir)
    cifar = Split(np.random.default_rng(0).integers(0, 256, (50000, 32, 32, 3), np.uint8),
                  np.zeros(50000, np.int32))
    for name, data, batch, epochs in (
        ("digits (uint8 32x32x1, in memory)", digits, 64, 20),
        ("CIFAR-sized uint8 32x32x3 x 50000 (in memory)", cifar, 128, 1),
    ):
        steps = epochs * (len(data) // batch)
        print(f"| {name} | {batch} | 0 | {rate(data, batch, mesh, num_steps=steps):.0f} |",
              flush=True)
    streaming = StreamingSplit(JpegSource(args.jpegs))
    batch = 32
    for workers in args.workers:
        images_s = rate(streaming, batch, mesh,
                        num_steps=args.epochs * (len(streaming) // batch), workers=workers)
        print(f"| ImageNet-style JPEG 500x375 -> RRC 224 + resize, {streaming.threads} "
              f"threads each | {batch} | {workers} | {images_s:.0f} |", flush=True)
    print(f"# load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
