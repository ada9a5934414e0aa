"""Which devices the suite runs on: every `device`-fixture test runs on CuPy too when a GPU answers."""

import pytest

from minigrad import backend


def test_cuda_suite_runs_when_a_gpu_is_present():
    if not backend.cuda_available():
        pytest.skip("no CUDA GPU (or no CuPy): the device-parametrised tests ran on the CPU only")
    import minigrad

    x = minigrad.randn(3, 4, device="cuda", requires_grad=True)
    (x * x).sum().backward()
    assert x.grad.device == "cuda"
