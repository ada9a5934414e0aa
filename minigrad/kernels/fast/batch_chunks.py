"""The batch-chunking policy of the fast pooling kernels: a few images at a time on a CPU, all at once on a GPU.

The pooling kernels' tap loops read and write every array ``kH * kW`` times. A whole (32, 192, 32, 32) batch
travels to main memory on each of those passes; a few images at a time stay in the CPU's cache between
them. On a GPU every pass over a chunk is a kernel launch, and fewer, larger launches are faster, so there
the whole batch is one chunk (:func:`minigrad.backend.prefers_cache_sized_chunks` says which applies).
The reference pooling kernels (:mod:`minigrad.kernels.max_pool`, :mod:`minigrad.kernels.avg_pool`) take
the whole batch at once everywhere; the chunks change no result.
"""

from __future__ import annotations

import math
from typing import Any

from minigrad import backend

CHUNK_ELEMENTS = 1 << 18  # output elements per batch chunk: ~1 MB of float32, fits in a CPU's L2 cache


def batch_chunks(array: Any) -> list[slice]:
    """Slices of the batch axis of ``array`` (N, ...): cache-sized ones where that pays, else one slice."""
    batch, elements_per_sample = array.shape[0], math.prod(array.shape[1:])
    if backend.prefers_cache_sized_chunks(array):
        step = max(1, CHUNK_ELEMENTS // max(1, elements_per_sample))
    else:
        step = max(1, batch)
    return [slice(start, start + step) for start in range(0, batch, step)]
