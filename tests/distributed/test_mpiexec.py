"""Data-parallel training across real MPI processes: each test starts ``mpiexec -n 2`` (or 3) on small models.

N ranks with SyncBatchNorm end with the weights of one process on the same global batch (float64, tight);
without it they end with those of one process that normalises each rank's shard on its own (and differ from
the big batch); the collectives give what MPI promises; a hung rank, or ranks that call different
collectives, end the job with a message naming them; and ``mpiexec ... minigrad train --distributed`` writes
its files from rank 0 only, resumes bit-for-bit with the same number of ranks, refuses another.

Without mpi4py or mpiexec these tests skip, saying why; with ``MINIGRAD_REQUIRE_MPI=1`` (CI) they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from minigrad import data, distributed
from minigrad.checkpoint import load_checkpoint
from minigrad.testing.tolerance import assert_close, float32_tolerance
from tests.distributed import mpi_worker

REPO_ROOT = Path(__file__).resolve().parents[2]
REQUIRE_MPI = os.environ.get("MINIGRAD_REQUIRE_MPI", "") not in ("", "0")


def _missing_mpi() -> str:
    """Why these tests cannot run here ("" when they can)."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install -e '.[mpi]')"
    if shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")) is None:
        return "no mpiexec on the PATH (pip install -e '.[mpi]' brings MPICH's)"
    return ""


@pytest.fixture(scope="module", autouse=True)
def mpi_available():
    reason = _missing_mpi()
    if reason and REQUIRE_MPI:
        pytest.fail(f"MINIGRAD_REQUIRE_MPI=1 but {reason}", pytrace=False)
    if reason:
        pytest.skip(reason)


def mpiexec(ranks: int, *arguments: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``mpiexec -n ranks python arguments...`` from the repository root, one BLAS thread per rank."""
    launcher = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.run([launcher, "-n", str(ranks), sys.executable, *arguments], cwd=REPO_ROOT, env=environment,
                          capture_output=True, text=True, timeout=timeout)


def python(*arguments: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, *arguments], cwd=REPO_ROOT, env=environment, capture_output=True,
                          text=True, timeout=120)


# ----- the library: N ranks against one process --------------------------------------------------------
@pytest.fixture(scope="module", params=[2, 3], ids=["2 ranks", "3 ranks"])
def equality_run(request, tmp_path_factory):
    """(ranks, [each rank's results]) of the equality scenario of mpi_worker.py."""
    out = tmp_path_factory.mktemp(f"equality{request.param}")
    result = mpiexec(request.param, "-m", "tests.distributed.mpi_worker", "equality", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    return request.param, [dict(np.load(out / f"equality_rank{r}.npz")) for r in range(request.param)]


def one_process(shards: int = 1) -> dict[str, np.ndarray]:
    """The reference: one process, plain BatchNorm, the whole global batch per step (with ``shards`` > 1: its
    shards normalised separately, as ranks without SyncBatchNorm do)."""
    dataset = mpi_worker.small_dataset()
    model = mpi_worker.small_model()
    sampler = distributed.DistributedSampler(dataset, num_replicas=1, rank=0, seed=mpi_worker.SEED)
    loader = data.DataLoader(dataset, mpi_worker.GLOBAL_BATCH, sampler=sampler, drop_last=True)
    losses = mpi_worker.train(model, mpi_worker.make_optimizer(model), loader, shards)
    return {"losses": np.array(losses), **model.state_dict()}


PARAMETERS = [name for name, _ in mpi_worker.small_model().named_parameters()]


def test_with_sync_batchnorm_n_ranks_end_with_the_weights_of_one_process(equality_run):
    ranks, results = equality_run
    reference = one_process()
    for name in PARAMETERS:
        for rank in range(ranks):
            assert_close(results[rank][f"sync/{name}"], reference[name], f"rank {rank} of {ranks}: {name}")
            np.testing.assert_array_equal(results[rank][f"sync/{name}"], results[0][f"sync/{name}"],
                                          err_msg=f"ranks 0 and {rank} disagree on {name}")
    # The running statistics too: SyncBatchNorm folds in the statistics of the whole batch.
    for name in ("1.running_mean", "1.running_var", "8.running_var", "1.num_batches_tracked"):
        assert_close(results[0][f"sync/{name}"], reference[name], name)
    # Each rank's loss is its shard's; their mean is the whole batch's.
    assert_close(np.mean([r["sync/losses"] for r in results], axis=0), reference["losses"], "mean loss")


def test_without_sync_batchnorm_each_rank_normalises_its_own_shard(equality_run):
    ranks, results = equality_run
    big_batch, shard_by_shard = one_process(), one_process(shards=ranks)
    for name in PARAMETERS:
        assert_close(results[0][f"plain/{name}"], shard_by_shard[name], f"{name} vs one process normalising each "
                     f"shard alone")
        np.testing.assert_array_equal(results[-1][f"plain/{name}"], results[0][f"plain/{name}"])
    # ... which is not what one process on the whole batch computes: far beyond rounding.
    differences = [np.abs(results[0][f"plain/{name}"] - big_batch[name]).max() / np.abs(big_batch[name]).max()
                   for name in PARAMETERS]
    assert max(differences) > 1e-3, differences
    # The running statistics are each rank's own (its shard's statistics), so they differ between ranks.
    assert not np.allclose(results[0]["plain/1.running_mean"], results[1]["plain/1.running_mean"])


def test_collectives_give_every_rank_the_same_result(equality_run):
    ranks, results = equality_run
    locals_ = [np.arange(5.0) * (r + 1) - r for r in range(ranks)]
    for result in results:
        np.testing.assert_array_equal(result["all_reduce/sum"], np.sum(locals_, axis=0))
        np.testing.assert_array_equal(result["all_reduce/max"], np.max(locals_, axis=0))
        np.testing.assert_array_equal(result["all_reduce/min"], np.min(locals_, axis=0))
        np.testing.assert_array_equal(result["broadcast"], locals_[-1])
        assert int(result["broadcast_object"]) == 1
        np.testing.assert_array_equal(result["all_gather_object"], np.arange(ranks))


# ----- a rank that never comes --------------------------------------------------------------------------
def test_a_hung_rank_ends_the_job_with_its_number(tmp_path):
    started = time.perf_counter()
    result = mpiexec(3, "-m", "tests.distributed.mpi_worker", "hang", str(tmp_path), timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert time.perf_counter() - started < 40, "the job should end within timeout + grace, not after rank 1 wakes"
    assert "all_reduce (collective #2) timed out" in output and "rank 1 never reached it" in output, output


def test_ranks_in_different_collectives_are_named(tmp_path):
    result = mpiexec(2, "-m", "tests.distributed.mpi_worker", "mismatch", str(tmp_path), timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "called collectives in different orders" in output, output


# ----- the command line ---------------------------------------------------------------------------------
TINY = ["--train-size", "32", "--test-size", "20", "--batch-size", "16", "--width", "0.0625", "--threads", "1",
        "--quiet"]
ONE_STEP = [*TINY, "--train-size", "16", "--epochs", "1", "--optimizer", "sgd", "--lr", "0.01", "--schedule",
            "constant", "--dropout", "0", "--aux-weight", "0", "--no-augment"]


def train(ranks: int, out: Path, *options: str) -> subprocess.CompletedProcess:
    arguments = ["-m", "minigrad", "train", "--distributed", "--out", str(out), *options]
    result = mpiexec(ranks, *arguments) if ranks > 1 else python(*arguments)
    return result


def test_cli_n_ranks_with_sync_bn_take_the_step_of_one_process(tmp_path):
    runs = {}
    for name, ranks, options in (("one", 1, ["--sync-bn"]), ("sync", 2, ["--sync-bn"]), ("plain", 2, [])):
        result = train(ranks, tmp_path / name, *ONE_STEP, *options)
        assert result.returncode == 0, result.stdout + result.stderr
        runs[name] = load_checkpoint(tmp_path / name / "checkpoint.npz")["model"]
    # One step: the longest sum is a batch norm's or a weight gradient's over batch x 32 x 32 values, through
    # GoogLeNet's 22 layers (minigrad/testing/tolerance.py). Further steps amplify rounding chaotically
    # (ReLU and max-pool decisions flip), as between two thread counts, so one step is the fair test.
    tolerance = float32_tolerance(terms=16 * 32 * 32, steps=22)
    # Every parameter but the convolutions' biases: a batch norm follows each, which cancels any constant, so
    # their exact gradient is zero and what they hold is rounding noise.
    trained = [key for key in runs["one"] if not key.endswith(("conv.bias", "running_mean", "running_var",
                                                               "num_batches_tracked"))]
    for key in trained:
        assert_close(runs["sync"][key], runs["one"][key], key, terms=16 * 32 * 32, steps=22)
    # The check can fail: per-rank batch statistics move the batch norms' weights far more than rounding.
    worst = max(np.abs(runs["plain"][key] - runs["one"][key]).max() / np.abs(runs["one"][key]).max() for key in trained)
    assert worst > 3 * tolerance, worst


def test_cli_only_rank_0_prints_and_writes(tmp_path):
    result = train(2, tmp_path, *[option for option in TINY if option != "--quiet"], "--epochs", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert result.stdout.count("done: test accuracy") == 1 and result.stdout.count("epoch 1/1: train loss") == 1, output
    assert "data-parallel over 2 rank(s)" in result.stdout and "8 images per rank per step" in result.stdout, output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint.npz", "config.json", "curves.png",
                                                                 "metrics.csv"]
    loader = load_checkpoint(tmp_path / "checkpoint.npz")["meta"]["loader"]
    assert loader["world_size"] == 2 and len(loader["ranks"]) == 2 and len(loader["rng"]) == 2
    assert loader["ranks"][0]["generator"] != loader["ranks"][1]["generator"]  # each rank augments its own way


def test_cli_resume_is_bit_for_bit_with_the_same_ranks_and_refused_with_others(tmp_path):
    run = [*TINY, "--schedule", "constant", "--optimizer", "sgd", "--lr", "0.01"]  # augmentation and dropout on
    straight = train(2, tmp_path / "straight", *run, "--epochs", "2")
    first = train(2, tmp_path / "resumed", *run, "--epochs", "1")
    assert straight.returncode == 0 and first.returncode == 0, straight.stderr + first.stderr
    refused = train(3, tmp_path / "resumed", "--resume", "--epochs", "2", "--quiet")
    assert refused.returncode != 0
    assert "over 2 rank(s), and this run has 3" in refused.stderr and "mpiexec -n 2" in refused.stderr, refused.stderr
    assert refused.stderr.count("over 2 rank(s)") == 1, "reported once, by rank 0"
    plain = python("-m", "minigrad", "train", "--out", str(tmp_path / "resumed"), "--resume", "--quiet")
    assert plain.returncode == 1 and "written by a data-parallel run over 2 ranks" in plain.stderr, plain.stderr
    assert "mpiexec -n 2 python -m minigrad train --distributed --resume" in plain.stderr
    resumed = train(2, tmp_path / "resumed", "--resume", "--epochs", "2", "--quiet")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    expected = load_checkpoint(tmp_path / "straight" / "checkpoint.npz")
    got = load_checkpoint(tmp_path / "resumed" / "checkpoint.npz")
    for key, value in expected["model"].items():
        np.testing.assert_array_equal(got["model"][key], value, err_msg=key)
    assert got["meta"]["loader"] == expected["meta"]["loader"]
    for row_got, row_expected in zip(got["meta"]["history"], expected["meta"]["history"]):
        assert {k: v for k, v in row_got.items() if k != "images_per_s"} == \
            {k: v for k, v in row_expected.items() if k != "images_per_s"}


def test_cli_an_error_on_the_ranks_ends_the_job_naming_the_rank(tmp_path):
    result = train(2, tmp_path, *TINY, "--dataset", "cifar10", "--data-dir", str(tmp_path / "nothing-here"))
    assert result.returncode != 0
    assert "minigrad train: rank 0 of 2:" in result.stderr and "--download" in result.stderr, result.stderr


def test_cli_ctrl_c_stops_every_rank_after_the_same_step_and_resumes(tmp_path):
    """mpiexec passes Ctrl-C to every rank, each at its own moment; they agree on one step, rank 0 writes the
    checkpoint, and --resume finishes the run with the same weights as an uninterrupted one."""
    run = [opt for opt in TINY if opt != "--quiet"] + ["--train-size", "64", "--batch-size", "8", "--epochs", "2",
                                                       "--schedule", "constant", "--optimizer", "sgd"]
    launcher = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    job = subprocess.Popen([launcher, "-n", "2", sys.executable, "-m", "minigrad", "train", "--distributed", "--out",
                            str(tmp_path / "stopped"), *run], cwd=REPO_ROOT, env=environment, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen = ""
    # Wait for the first step to end on rank 0's bar: its gradients were averaged with rank 1's, so every rank
    # is inside the training loop, where Ctrl-C means "stop after this step" (a rank still starting up would
    # take it as an ordinary KeyboardInterrupt while the others wait in a collective).
    first_step = re.compile(r"epoch 1/2: [^\r\n]*\| [1-9][0-9]*/")
    while not first_step.search(seen) and job.poll() is None:
        seen += job.stdout.read(1)
    job.send_signal(signal.SIGINT)
    output = seen + job.communicate(timeout=120)[0]
    assert job.returncode != 0, output
    assert output.count("checkpoint written to") == 1, output
    straight = train(2, tmp_path / "straight", *run, "--quiet")
    resumed = train(2, tmp_path / "stopped", "--resume", "--quiet")
    assert straight.returncode == 0 and resumed.returncode == 0, straight.stderr + resumed.stderr
    expected = load_checkpoint(tmp_path / "straight" / "checkpoint.npz")["model"]
    got = load_checkpoint(tmp_path / "stopped" / "checkpoint.npz")["model"]
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)
