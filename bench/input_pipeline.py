"""Images/s of the input pipeline alone (no train step), to compare with
bench/train_throughput.py. A benchmark, not a test.

    python bench/input_pipeline.py [--data_dir DIR]

In-memory datasets (digits, and a CIFAR-sized uint8 array): shuffled epoch batches cut on the
host, placed on the device mesh (put_batch) through the same background prefetch the
training loop uses. ImageNet-style streaming: records are JPEG bytes decoded with PIL (TFDS's
NumPy decoding path also decodes with PIL-class codecs; here the JPEGs are generated, ~500x375
like ImageNet's median image), then random-resized crop 224 + resize, in worker threads.
"""

from __future__ import annotations

import argparse
import io
import os
import time

import jax
import numpy as np

from poolnets.data import Split, default_data_dir, epoch_batches, load_split, prefetch
from poolnets.data.sources import StreamingSplit
from poolnets.training.steps import make_mesh, put_batch


def rate(batches, batch_size: int, mesh) -> float:
    """Images/s of consuming `batches` through prefetch + device placement."""
    t = time.perf_counter()
    n = 0
    for arrays in prefetch((put_batch(mesh, *b) for b in batches), 2):
        jax.block_until_ready(arrays)
        n += batch_size
    return n / (time.perf_counter() - t)


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
    args = parser.parse_args()
    mesh = make_mesh()
    print(f"# {jax.device_count()} x {jax.devices()[0].device_kind}, {os.cpu_count()} CPUs")
    print("| pipeline | batch | images/s |")
    print("|---|---:|---:|")
    digits = load_split("digits", "train", args.data_dir)
    for epoch_count, name, data, batch in (
        (20, "digits (float32 32x32x1, in memory)", digits, 64),
        (1, "CIFAR-sized uint8 32x32x3 x 50000 (in memory)",
         Split(np.random.default_rng(0).integers(0, 256, (50000, 32, 32, 3), np.uint8),
               np.zeros(50000, np.int32)), 128),
    ):
        def batches(data=data, batch=batch, epochs=epoch_count):
            for epoch in range(epochs):
                yield from epoch_batches(data, batch, seed=0, epoch=epoch)

        print(f"| {name} | {batch} | {rate(batches(), batch, mesh):.0f} |", flush=True)
    streaming = StreamingSplit(JpegSource(256))
    batch = 32
    stream = epoch_batches(streaming, batch, seed=0, epoch=0)
    print(f"| ImageNet-style JPEG 500x375 -> RRC 224 + resize, {streaming.workers} threads | "
          f"{batch} | {rate(stream, batch, mesh):.0f} |", flush=True)


if __name__ == "__main__":
    main()
