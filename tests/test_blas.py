"""minigrad.blas: reading and setting NumPy's BLAS threads while Python runs."""

from __future__ import annotations

import numpy
import pytest
import threadpoolctl

from minigrad import blas


def test_set_threads_changes_what_openblas_reports_and_gives_it_back():
    before = blas.get_threads()
    if before is None:
        pytest.skip("numpy's BLAS here is not an OpenBLAS that can be asked")
    try:
        assert blas.set_threads(2) is True and blas.get_threads() == 2
        assert blas.set_threads(1) is True and blas.get_threads() == 1
        # threadpoolctl, asked on its own, sees the same count in numpy's OpenBLAS
        counts = [info["num_threads"] for info in threadpoolctl.threadpool_info() if info["internal_api"] == "openblas"]
        assert counts and set(counts) == {1}
        product = numpy.ones((64, 64), numpy.float32) @ numpy.ones((64, 64), numpy.float32)
        assert product[0, 0] == 64  # the BLAS still works after the change
    finally:
        blas.set_threads(before)
    assert isinstance(blas.core_name(), str) and blas.core_name()


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2"])
def test_set_threads_refuses_a_count_that_is_not_positive(threads):
    with pytest.raises(ValueError, match=r"blas.set_threads: threads must be a positive int"):
        blas.set_threads(threads)


def test_without_openblas_nothing_is_set(monkeypatch):
    class NoOpenBLAS:  # what threadpoolctl finds under MKL or Apple's Accelerate
        lib_controllers: list = []

        def select(self, **kwargs):
            return self

    monkeypatch.setattr(threadpoolctl, "ThreadpoolController", NoOpenBLAS)
    assert blas.get_threads() is None and blas.set_threads(1) is False and blas.core_name() is None
