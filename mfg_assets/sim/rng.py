"""Named, independent random streams.

Every source draws from its own stream keyed by (seed, names...), so adding a source,
a drift scenario or a longer run never shifts the random numbers of another stream:
the first hours of a 48 h run equal a 24 h run with the same seed.
"""

from __future__ import annotations

import hashlib

import numpy as np


def stream_key(*names: str | int) -> int:
    # blake2b, not hash(): Python's str hash is salted per process and would break determinism.
    digest = hashlib.blake2b("/".join(map(str, names)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def rng_for(seed: int, *names: str | int) -> np.random.Generator:
    """A generator for the stream ``names`` of run ``seed``."""
    return np.random.default_rng([seed, stream_key(*names)])
