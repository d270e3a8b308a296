"""Write `tests/pooling/fixtures/fractional_torch.npz`: PyTorch FractionalMaxPool2d/3d outputs.

Run in a separate venv that has torch (never a dependency of poolnets or its tests):

    python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0 numpy
    /tmp/torchvenv/bin/python tools/make_torch_fixtures_fractional.py

Each case stores the NCHW / NCDHW input, PyTorch's `_random_samples` (N, C, ndim) in
PyTorch's own order, the kernel and output sizes, and PyTorch's values and indices.
"""

import pathlib

import numpy as np
import torch

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests/pooling/fixtures/fractional_torch.npz"

# (spatial shape, kernel_size, output_size, batch, channels)
CASES = [
    ((9, 11), (2, 2), (5, 7), 2, 3),
    ((10, 10), (3, 3), (6, 8), 1, 2),
    ((7, 13), (2, 3), (4, 6), 2, 1),
    ((5, 6), (2, 2), (1, 3), 1, 2),
    ((12, 12), (2, 2), (11, 6), 1, 2),
    ((7, 8, 9), (2, 2, 2), (4, 5, 6), 1, 2),
    ((6, 6, 7), (3, 2, 2), (3, 4, 5), 2, 1),
]


def main() -> None:
    torch.manual_seed(20140218)
    arrays = {"torch_version": np.asarray(torch.__version__)}
    for i, (spatial, kernel, out, n, c) in enumerate(CASES):
        x = torch.randn(n, c, *spatial, dtype=torch.float32)
        samples = torch.rand(n, c, len(spatial), dtype=torch.float32)
        samples[0, 0, 0] = 0.0  # edge phases: exact zero and just below one
        samples[-1, -1, -1] = float(np.nextafter(np.float32(1), np.float32(0)))
        pool = torch.nn.functional.fractional_max_pool2d if len(spatial) == 2 else (
            torch.nn.functional.fractional_max_pool3d)
        y, idx = pool(x, kernel, output_size=out, return_indices=True, _random_samples=samples)
        arrays.update({
            f"{i}_x": x.numpy(), f"{i}_samples": samples.numpy(), f"{i}_kernel": np.asarray(kernel),
            f"{i}_output_size": np.asarray(out), f"{i}_y": y.numpy(), f"{i}_indices": idx.numpy(),
        })
    arrays["num_cases"] = np.asarray(len(CASES))
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(CASES)} cases)")


if __name__ == "__main__":
    main()
