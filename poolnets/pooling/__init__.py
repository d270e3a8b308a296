"""Pure-functional pooling primitives (no Flax), channels-last `(*batch, *spatial, features)`.

The public surface is documented in `shared/API.md`; each function's docstring gives
its output-shape formula.
"""
