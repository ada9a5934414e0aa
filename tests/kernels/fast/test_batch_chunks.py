"""The pooling kernels' batch chunks (minigrad/kernels/fast/batch_chunks.py): cache-sized on a CPU, the whole
batch where the backend says fewer, larger passes are better; and chunked results equal to the reference's."""

import numpy as np
import pytest

from minigrad import backend
from minigrad.kernels.fast import avg_pool as fast_avg_pool
from minigrad.kernels.fast import batch_chunks
from minigrad.kernels.fast import max_pool as fast_max_pool
from tests.kernels.fast import DTYPES
from tests.kernels.fast.test_avg_pool import check_against_reference as check_avg_against_reference
from tests.kernels.fast.test_max_pool import check_against_reference as check_max_against_reference
from tests.kernels.pool_checks import check_avg_pool, check_max_pool, random_input


def test_cache_sized_chunks_cover_the_batch_in_order(monkeypatch):
    monkeypatch.setattr(batch_chunks, "CHUNK_ELEMENTS", 100)
    chunks = batch_chunks.batch_chunks(np.zeros((7, 2, 5, 5)))  # 50 elements per image: 2 images per chunk
    assert [(c.start, c.stop) for c in chunks] == [(0, 2), (2, 4), (4, 6), (6, 8)]
    assert [(c.start, c.stop) for c in batch_chunks.batch_chunks(np.zeros((3, 2, 10, 10)))] == [(0, 1), (1, 2),
                                                                                                (2, 3)]
    assert batch_chunks.batch_chunks(np.zeros((0, 3, 4, 4))) == []


def test_one_chunk_where_the_backend_prefers_few_large_passes(monkeypatch):
    monkeypatch.setattr(batch_chunks, "CHUNK_ELEMENTS", 100)
    monkeypatch.setattr(backend, "prefers_cache_sized_chunks", lambda array: False)
    assert [(c.start, c.stop) for c in batch_chunks.batch_chunks(np.zeros((7, 2, 5, 5)))] == [(0, 7)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_batches_split_into_cache_sized_chunks_give_the_same_result(monkeypatch, dtype, device):
    monkeypatch.setattr(batch_chunks, "CHUNK_ELEMENTS", 100)  # 2 images of 2x3x3x3 outputs per chunk, 7 images
    x = random_input((7, 3, 6, 6), dtype)
    check_max_pool(x, device, kernels=fast_max_pool, kernel_size=3, stride=2, padding=1, ceil_mode=True)
    check_avg_pool(x, device, kernels=fast_avg_pool, kernel_size=3, stride=1, padding=1, count_include_pad=False)
    check_max_against_reference(x, device, kernel_size=3, stride=1, padding=1)
    check_avg_against_reference(x, device, kernel_size=3, stride=2, padding=1, ceil_mode=True)
