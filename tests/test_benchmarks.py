"""The benchmark harness runs and reports what it measured: ``python -m benchmarks --smoke`` (toy shapes, one
thread) prints one table and writes the same rows as JSON; the timing and memory helpers measure real things."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch  # noqa: F401  (the benchmarks compare against torch: a missing torch fails here, plainly)

from benchmarks.common import Row, format_table, peak_rss_increase, rows_to_json, time_pair

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
    assert header["threads"]["threads"] == header["threads"]["torch_threads"] == 1  # --smoke: one thread each
    assert header["gemm_ceiling"]["numpy_gflops"] > 0
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
    results = rows_to_json(rows, {"gemm_ceiling": {"numpy_gflops": 400.0}})
    assert results["rows"][0]["minigrad_percent_of_ceiling"] == pytest.approx(50.0)
    assert results["rows"][1]["minigrad_gflops"] is None
    json.dumps(results)  # every value is JSON-ready
