"""The benchmark harness runs and reports what it measured: ``python -m benchmarks --smoke`` (toy shapes, one
thread) prints one table and writes the same rows as JSON; the timing and memory helpers measure real things;
``--device cuda`` is accepted, stops with one clear line where there is no GPU, and a torch without CUDA shows
as "n/a" rather than as CPU times."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch  # noqa: F401  (the benchmarks compare against torch: a missing torch fails here, plainly)

from benchmarks import bench_kernels, bench_train
from benchmarks import common as bench_common
from benchmarks.__main__ import main as harness_main
from benchmarks.__main__ import parse_arguments
from benchmarks.common import (
    TORCH_HAS_NO_CUDA,
    Row,
    format_table,
    gemm_ceiling,
    peak_rss_increase,
    rows_to_json,
    time_pair,
)
from minigrad import backend

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One smoke run of the harness in a fresh interpreter: (stdout, JSON results). The training group
    (benchmarks/bench_train.py, which trains whole epochs) is left to its own tests, to keep this one short."""
    json_path = tmp_path_factory.mktemp("bench") / "results.json"
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--only", "kernels", "--only", "googlenet",
         "--json", str(json_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    with open(json_path) as file:
        return completed.stdout, json.load(file)


def table_rows(stdout: str) -> list[list[str]]:
    """The table's data lines, split on runs of 2+ spaces (cells hold single spaces only)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("case ")) + 2  # skip the dashes
    rows = []
    for line in lines[start:]:
        if line.startswith(("note:", "ratio =")):
            break
        if line.strip():
            rows.append([cell for cell in line.split("  ") if cell.strip()])
    return rows


def test_smoke_table_and_json_agree(smoke_run):
    stdout, results = smoke_run
    rows = results["rows"]
    groups = {row["group"] for row in rows}
    assert {"kernels", "googlenet"} <= groups
    table = table_rows(stdout)
    assert [cells[0].strip() for cells in table] == [row["case"] for row in rows]
    for cells, row in zip(table, rows):
        minigrad_ms, torch_ms, ratio = (float(cell.replace(",", "")) for cell in cells[1:4])
        assert minigrad_ms == pytest.approx(row["minigrad_ms"], abs=0.06)
        assert torch_ms == pytest.approx(row["torch_ms"], abs=0.06)
        assert row["minigrad_ms"] > 0 and row["torch_ms"] > 0
        assert row["ratio"] == pytest.approx(row["minigrad_ms"] / row["torch_ms"])
        assert ratio == pytest.approx(row["ratio"], abs=0.006)


def test_smoke_cases_cover_the_kernels_and_the_model(smoke_run):
    _, results = smoke_run
    cases = [row["case"] for row in results["rows"]]
    for prefix in ("conv 1x1", "conv 3x3", "max_pool", "batch_norm", "cat", "relu", "dropout"):
        assert any(case.startswith(prefix) and case.endswith(" fwd") for case in cases), prefix
        assert any(case.startswith(prefix) and case.endswith(" fwd+bwd") for case in cases), prefix
    assert any(case.startswith("googlenet") and case.endswith("eval fwd") for case in cases)
    assert any(case.startswith("googlenet") and case.endswith("train step") for case in cases)


def test_smoke_flops_memory_and_header(smoke_run):
    _, results = smoke_run
    header, rows = results["header"], results["rows"]
    assert header["device"] == "cpu"  # the default
    assert header["threads"]["threads"] == header["threads"]["torch_threads"] == 1  # --smoke: one thread each
    assert header["gemm_ceiling"]["library"] == "numpy" and header["gemm_ceiling"]["device"] == "cpu"
    assert header["gemm_ceiling"]["gflops"] > 0 and header["gemm_ceiling"]["torch_gflops"] > 0
    assert all(row["torch_note"] is None for row in rows)  # torch ran beside minigrad in every case
    conv = next(row for row in rows if row["case"].startswith("conv 3x3") and row["case"].endswith(" fwd"))
    # "conv 3x3 C_in->C_out @S": 2 * N * C_out * S * S * C_in * 9 flops at the smoke batch of 2
    c_in, c_out = (int(n) for n in conv["case"].split()[2].split("->"))
    size = int(conv["case"].split()[3].lstrip("@"))
    assert conv["flops"] == 2 * 2 * c_out * size * size * c_in * 9
    assert conv["minigrad_gflops"] == pytest.approx(conv["flops"] / conv["minigrad_ms"] / 1e6)
    train = next(row for row in rows if row["case"].endswith("train step"))
    assert train["flops"] > 0 and "img/s" in train["extra"]
    # peak memory of a training step: activations and gradients, some MiB, not zero, not gigabytes
    assert 1 < train["minigrad_peak_mb"] < 2000 and 1 < train["torch_peak_mb"] < 2000


def test_time_pair_medians_and_ratio():
    minigrad_ms, torch_ms = time_pair(lambda: time.sleep(0.03), lambda: time.sleep(0.01), warmup=0, repeats=3,
                                      settle=0)
    assert 29 < minigrad_ms < 60 and 9 < torch_ms < 40
    assert Row("g", "c", minigrad_ms, torch_ms).ratio == pytest.approx(minigrad_ms / torch_ms)


def test_peak_rss_increase_sees_a_temporary_array():
    def allocate_and_free():
        array = np.ones(64 * 2**20 // 8)  # 64 MiB, every page touched, freed on return
        return float(array[-1])

    # Earlier tests in this process may have left freed memory resident in the allocator's heap, which the
    # array could reuse without growing the resident size: hand it back to the system first (glibc).
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    peak = peak_rss_increase(allocate_and_free)
    assert 56 < peak < 96  # the array's 64 MiB, give or take the allocator and the interpreter


def test_format_table_aligns_and_marks_missing_values():
    rows = [Row("kernels", "conv fwd", 12.0, 6.0, flops=2.4e9, extra={"bwd/fwd": 1.5}),
            Row("googlenet", "model step", 1500.0, 1000.0, minigrad_peak_mb=300.0, torch_peak_mb=200.0)]
    text = format_table(rows, ceiling_gflops=400.0)
    lines = text.splitlines()
    assert lines[0].startswith("case") and set(lines[1]) <= {"-", " "}
    conv_cells = lines[2].split()
    # 2.4 GFLOP in 12 ms = 200 GFLOP/s = 50% of 400; torch 400 GFLOP/s = 100%
    assert conv_cells[2:8] == ["12.0", "6.0", "2.00", "200.0", "50", "100"]
    assert lines[3] == ""  # a blank line between groups
    assert lines[4].split()[2:10] == ["1,500.0", "1,000.0", "1.50", "-", "-", "-", "300", "200"]
    results = rows_to_json(rows, {"gemm_ceiling": {"gflops": 400.0}})
    assert results["rows"][0]["minigrad_percent_of_ceiling"] == pytest.approx(50.0)
    assert results["rows"][1]["minigrad_gflops"] is None
    json.dumps(results)  # every value is JSON-ready


# ----- devices ---------------------------------------------------------------------------------------
def test_device_option_defaults_to_cpu_and_accepts_cuda():
    assert parse_arguments([]).device == "cpu"
    assert parse_arguments(["--device", "cuda", "--smoke"]).device == "cuda"
    with pytest.raises(SystemExit):
        parse_arguments(["--device", "tpu"])


@pytest.mark.skipif(backend.cuda_available(), reason="a GPU answers here: --device cuda would run")
@pytest.mark.parametrize("main", [harness_main, bench_train.main, bench_kernels.main], ids=["harness", "train",
                                                                                             "kernels"])
def test_device_cuda_without_a_gpu_exits_at_once_with_one_line(main, capsys):
    started = time.perf_counter()
    with pytest.raises(SystemExit) as stopped:
        main(["--device", "cuda", "--smoke"])
    assert stopped.value.code == 2  # a usage error, as argparse's own
    assert time.perf_counter() - started < 5  # nothing was measured first
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--device cuda: device 'cuda' is not available" in lines[0], err
    assert "Traceback" not in err


def test_gpu_timing_waits_for_the_device_inside_the_clock_after_a_warm_up(monkeypatch):
    """On a GPU a call returns before its work is done: time_pair must count the wait, and warm up first."""
    calls = {"minigrad": 0, "torch": 0}

    def wait_for(library, device):
        assert device == "cuda"
        return lambda: time.sleep(0.02 if library == "torch" else 0.0)  # torch's "GPU work" takes 20 ms

    def count(library):
        def call():
            calls[library] += 1
        return call

    monkeypatch.setattr(bench_common, "wait_for", wait_for)
    minigrad_ms, torch_ms = time_pair(count("minigrad"), count("torch"), warmup=0, repeats=3, settle=0,
                                      device="cuda")
    assert torch_ms >= 19 and minigrad_ms < 15
    assert calls == {"minigrad": 4, "torch": 4}  # warmup=0 still warms up once on a GPU (CuPy compiles kernels)


def test_torch_without_the_device_is_marked_not_compared(monkeypatch):
    """A CPU build of torch on a GPU machine: minigrad's times alone, and torch's column says why."""
    minigrad_ms, torch_ms = time_pair(lambda: None, None, warmup=0, repeats=2, settle=0)
    assert minigrad_ms >= 0 and torch_ms is None
    monkeypatch.setattr(bench_kernels, "torch_device", lambda device: None)
    rows = bench_kernels.run(smoke=True, repeats=1, warmup=0)[:4]  # two conv cases, fwd and fwd+bwd
    for row in rows:
        assert row.minigrad_ms > 0 and row.torch_ms is None and row.ratio is None
        assert row.torch_note == TORCH_HAS_NO_CUDA
    text = format_table(rows, ceiling_gflops=100.0)
    assert all(TORCH_HAS_NO_CUDA in line for line in text.splitlines()[2:])
    entry = rows_to_json(rows, {"gemm_ceiling": {"gflops": 100.0}})["rows"][0]
    assert entry["torch_ms"] is None and entry["torch_note"] == TORCH_HAS_NO_CUDA and entry["ratio"] is None
    assert bench_common.throughput(32, 100.0, None) == {"img/s": 320.0}


def test_gemm_ceiling_names_its_device_and_library():
    ceiling = gemm_ceiling(size=64, repeats=1, device="cpu")
    assert ceiling["device"] == "cpu" and ceiling["library"] == "numpy" and ceiling["size"] == 64
    assert ceiling["gflops"] > 0 and ceiling["torch_gflops"] > 0


def test_cupy_peak_hook_counts_the_most_bytes_in_use_at_once():
    """The bookkeeping of the GPU memory hook, driven as CuPy's pool drives it (no GPU needed)."""
    pytest.importorskip("cupy")
    hook = bench_common._cupy_peak_hook()

    def malloc(size):
        hook.malloc_postprocess(device_id=0, size=size, mem_size=size, mem_ptr=1, pmem_id=1)

    def free(size):
        hook.free_postprocess(device_id=0, mem_size=size, mem_ptr=1, pmem_id=1)

    free(4096)  # a block from before the measurement comes back: the count goes below the start
    malloc(1024)
    malloc(2048)
    free(1024)
    malloc(512)
    assert hook.peak == 0  # never above what was in use at the start (-4096 + 3072 at most)
    malloc(8192)
    assert hook.peak == 2048 + 512 + 8192 - 4096 and hook.in_use == hook.peak


def test_model_conv_layers_are_recorded_from_the_model():
    """The convlayers group: every distinct conv the model runs, found by running it, each with its bwd/fwd."""
    from benchmarks import bench_kernels

    cases = bench_kernels.model_conv_cases(smoke=True)
    names = [case.name for case in cases]
    assert len(names) == len(set(names)) and len(cases) >= 25  # stem + 9 blocks x (stacked 1x1, 3x3, 5x5, pool 1x1)
    assert names[0].startswith("conv 3x3 3->") and names[0].endswith("(stem)")
    assert {case.name.split()[1] for case in cases} == {"1x1", "3x3", "5x5"}
    rows = bench_kernels.run(smoke=True, repeats=1, warmup=0, model_convs=True)
    assert len(rows) == 2 * len(cases) and {row.group for row in rows} == {"convlayers"}
    # a timing ratio: present and finite on every fwd+bwd row (its sign is at the mercy of a busy machine when
    # each case runs once without warm-up, as here)
    assert all(math.isfinite(row.extra["bwd/fwd"]) for row in rows[1::2])


def test_distributed_group_measures_one_and_two_processes():
    """``--only distributed`` on toy sizes: images/s and efficiency per case; the 2-process cases where MPI is
    installed (CI: MINIGRAD_REQUIRE_MPI=1 makes their absence a failure)."""
    from benchmarks import bench_distributed

    rows = bench_distributed.run(smoke=True)
    with_mpi = bench_distributed._mpiexec() is not None
    if not with_mpi and os.environ.get("MINIGRAD_REQUIRE_MPI", "") not in ("", "0"):
        pytest.fail("MINIGRAD_REQUIRE_MPI=1 but mpi4py/mpiexec is missing: pip install -e '.[mpi]'")
    assert [row.case.split(",")[0] for row in rows] == ["1 process x 1 thread", "1 process x 2 threads"] + (
        ["2 processes x 1 thread"] * 2 if with_mpi else [])
    for row in rows:
        assert row.group == "distributed" and row.minigrad_ms > 0 and row.torch_ms is None
        assert row.extra["img/s"] == pytest.approx(8 / row.minigrad_ms * 1e3, abs=0.051)  # rounded to 0.1
    assert rows[0].extra["efficiency"] == "100%"
    assert "distributed" in parse_arguments(["--only", "distributed"]).only


def test_the_winograd_experiment_computes_the_convolution():
    """benchmarks/tried/winograd.py (measured and left out): its F(2x2, 3x3) is the stride-1, padding-1 3x3
    convolution, to float64 rounding, so the accuracy and time it reports are of the right thing."""
    from benchmarks.tried import winograd
    from minigrad.kernels import conv

    rng = np.random.default_rng(3)
    x, weight = rng.standard_normal((2, 3, 6, 8)), rng.standard_normal((5, 3, 3, 3))
    expected, _ = conv.conv2d_forward(x, weight, None, padding=1)
    np.testing.assert_allclose(winograd.winograd_conv3x3(x, weight), expected, rtol=1e-12, atol=1e-12)
    assert "e-0" in winograd.measure(rng, 1, 4, 4, 2)   # one table row, errors included


def test_profile_step_prints_the_functions_with_the_most_time(capsys):
    from benchmarks import profile_step

    profile_step.main(["--width", "0.0625", "--batch-size", "4", "--steps", "1", "--top", "5"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("width 0.0625, batch 4") and "ms per step" in lines[0]
    assert len(lines) == 2 + 5 and all("%" in line for line in lines[2:])
