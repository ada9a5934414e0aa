"""The ``minigrad`` command line: help texts, ``gradcheck``, and ``train`` end to end, including the ways a
class demo goes wrong (no GPU, no CIFAR archive, no or a broken checkpoint, a diverging run), each of which
must end in one clear line and exit status 1, never a traceback."""

from __future__ import annotations

import csv
import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from minigrad import backend, cli, train
from tests.test_train import one_blas_thread  # noqa: F401  (an autouse fixture: tiny runs, 1 BLAS thread)

REPO = Path(__file__).resolve().parents[1]
ISSUE_OPTIONS = ["--dataset", "--data-dir", "--download", "--variant", "--stem", "--width", "--aux-weight", "--epochs",
                 "--batch-size", "--lr", "--optimizer", "--schedule", "--weight-decay", "--device", "--seed", "--out",
                 "--resume", "--limit-train"]
TINY = ["--width", "0.125", "--train-size", "128", "--test-size", "64", "--batch-size", "32", "--stem", "cifar",
        "--quiet"]


def run_minigrad(*arguments: str) -> subprocess.CompletedProcess:
    """``python -m minigrad ARGUMENTS`` in a fresh interpreter, from the repository root."""
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "minigrad", *arguments], capture_output=True, text=True,
                          cwd=REPO, env=environment, timeout=120)


def test_console_script_points_at_the_cli():
    scripts = {entry.name: entry.value for entry in importlib.metadata.entry_points(group="console_scripts")}
    assert scripts.get("minigrad") == "minigrad.cli:main"


def test_help_lists_the_commands_and_every_train_option():
    top = run_minigrad("--help")
    assert top.returncode == 0, top.stderr
    commands = ("gradcheck", "train", "summary", "convert-weights", "predict", "exercises", "check", "tutorials")
    assert all(command in top.stdout for command in commands)

    train_help = run_minigrad("train", "--help")
    assert train_help.returncode == 0, train_help.stderr
    missing = [option for option in ISSUE_OPTIONS if option not in train_help.stdout]
    assert not missing, f"minigrad train --help does not list {missing}"
    for choice in ("shapes", "cifar10", "cifar100", "cpu", "cuda", "onecycle", "sgd"):
        assert choice in train_help.stdout


def test_train_help_says_each_default_and_never_shows_a_flag_as_true_or_false():
    """``--no-augment ... (default: True)`` reads as if augmentation were off: flags state their default behaviour
    in words, and every option that takes a value shows its default."""
    parser = cli.build_parser()
    train_parser = parser._subparsers._group_actions[0].choices["train"]
    text = " ".join(train_parser.format_help().split())
    assert "(default: True)" not in text and "(default: False)" not in text
    for action in train_parser._actions:
        if action.dest == "help":
            continue
        assert action.help, f"{action.option_strings} has no help"
        help_text = " ".join(train_parser._get_formatter()._expand_help(action).split())
        assert "default" in help_text, f"{action.option_strings}: the help does not say the default: {help_text!r}"
    assert "turn off the random crops and flips (default: on" in text
    assert "no progress bars or per-epoch lines (default: show them)" in text


def test_gradcheck_relu_prints_a_passing_table():
    result = run_minigrad("gradcheck", "relu")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    relu_rows = [row for row in rows if row and row[0] == "relu"]
    assert len(relu_rows) == 1 and relu_rows[0][-1] == "pass", result.stdout
    assert float(relu_rows[0][2]) < 1e-6, "max abs error column"
    assert "1 of 1 ops pass" in result.stdout


def test_gradcheck_of_an_unknown_op_fails_cleanly(capsys):
    assert cli.main(["gradcheck", "no_such_op"]) == 2
    assert "no registered op matches" in capsys.readouterr().err


def test_train_writes_the_four_files(tmp_path, monkeypatch):
    steps: list[int] = []
    original_fit = train.fit
    monkeypatch.setattr(train, "fit", lambda *a, **k: original_fit(*a, on_step=lambda s, _: steps.append(s), **k))
    out = tmp_path / "run"
    status = cli.main(["train", *TINY, "--epochs", "1", "--limit-train", "64", "--lr", "0.02", "--seed", "3",
                       "--out", str(out)])
    assert status == 0
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "config.json", "curves.png", "metrics.csv"]
    assert steps == [1, 2], "--limit-train 64 with batches of 32 is two steps"
    config = json.loads((out / "config.json").read_text())
    assert (config["limit_train"], config["lr"], config["seed"], config["width"], config["epochs"]) == (64, 0.02, 3,
                                                                                                        0.125, 1)
    with open(out / "metrics.csv") as file:
        assert [row["epoch"] for row in csv.DictReader(file)] == ["1"]

    # --resume alone picks the run's own plan (1 epoch, all done) rather than the default 4 epochs.
    assert cli.main(["train", "--resume", "--quiet", "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["epochs"] == 1


@pytest.mark.skipif(backend.cuda_available(), reason="this machine has a GPU; the no-GPU message cannot be seen")
def test_device_cuda_without_a_gpu_is_one_clear_line(tmp_path, capsys):
    status = cli.main(["train", *TINY, "--epochs", "1", "--device", "cuda", "--out", str(tmp_path)])
    assert status == 1
    error = capsys.readouterr().err
    assert error.startswith("minigrad train: device 'cuda' is not available") and "Traceback" not in error
    assert "pip install" in error, "the message should say how to get a GPU build"


def test_negative_threads_is_one_clear_line(tmp_path, capsys):
    assert cli.main(["train", *TINY, "--threads", "-1", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("minigrad train: --threads must be 0 (the BLAS default) or a positive")


def cifar_command(tmp_path: Path, *extra: str) -> list[str]:
    return ["train", *TINY, "--epochs", "1", "--dataset", "cifar10", "--data-dir", str(tmp_path / "cifar-data"),
            "--out", str(tmp_path / "run"), *extra]


def test_cifar10_without_the_archive_says_where_to_put_it(tmp_path, capsys):
    assert cli.main(cifar_command(tmp_path)) == 1
    error = capsys.readouterr().err
    assert error.startswith("minigrad train: CIFAR10: ") and "Traceback" not in error
    archive = tmp_path / "cifar-data" / "cifar-10-python.tar.gz"
    assert f"put it at {archive}" in error and "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in error
    assert "--download" in error, "on the command line the way to download is --download, not download=True"
    assert not (tmp_path / "run").exists(), "nothing is written before the data is there"


def test_cifar10_with_a_corrupted_archive_names_both_checksums(tmp_path, capsys):
    archive = tmp_path / "cifar-data" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    archive.write_bytes(b"\x1f\x8b" + bytes(1000))  # a gzip magic number and then nothing of value
    assert cli.main(cifar_command(tmp_path)) == 1
    error = capsys.readouterr().err
    assert error.startswith("minigrad train: ") and "corrupted or incomplete" in error
    assert "c58f30108f718f92721af3b95e74349a" in error, "the published MD5 of the archive"


def test_cifar10_download_while_offline_says_where_to_put_the_file(tmp_path, capsys, monkeypatch):
    import urllib.error
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    assert cli.main(cifar_command(tmp_path, "--download")) == 1
    error = capsys.readouterr().err
    assert error.startswith("minigrad train: could not download https://www.cs.toronto.edu/~kriz/")
    assert f"put it at {tmp_path / 'cifar-data' / 'cifar-10-python.tar.gz'}" in error
    assert [path.name for path in (tmp_path / "cifar-data").iterdir()] == [], "no partial download left behind"


def test_resume_without_a_checkpoint_exits_1_without_a_traceback(tmp_path):
    result = run_minigrad("train", "--resume", "--quiet", "--out", str(tmp_path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (f"minigrad train: no checkpoint at {tmp_path / 'checkpoint.npz'}; start without "
                                     f"--resume, or point --out at the run's folder")


def test_resume_from_a_corrupted_checkpoint_exits_1(tmp_path, capsys):
    (tmp_path / "checkpoint.npz").write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    assert cli.main(["train", "--resume", "--quiet", "--out", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("minigrad train: checkpoint ") and "truncated or corrupted" in error


@pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")
def test_diverging_run_exits_1_naming_the_step(tmp_path, capsys):
    """lr=1e6: the loss grows to ~1e22 by step 3 and is NaN at step 4 (batch norm hides the blow-up a while)."""
    status = cli.main(["train", *TINY, "--epochs", "1", "--lr", "1e6", "--schedule", "constant",
                       "--out", str(tmp_path)])
    assert status == 1
    error = capsys.readouterr().err
    assert re.fullmatch(r"minigrad train: the loss became nan at step \d \(epoch 1\) with learning rate 1e\+06; "
                        r"try a lower --lr \(e\.g\. 1e\+05\) or a longer warm-up\n", error), error


def test_given_options_tells_typed_options_from_defaults():
    """What `minigrad train --time-budget` relies on to let typed options win over its recipe."""
    parser = cli.build_parser()
    train_parser = parser.parse_args(["train"]).handler.keywords["parser"]
    names = set(train.TrainConfig.__dataclass_fields__)
    assert cli.given_options(train_parser, [], names) == set()
    typed = ["--width=0.125", "--batch", "64", "--no-augment", "--quiet", "--resume", "--dataset", "folder"]
    assert cli.given_options(train_parser, typed, names) == {"width", "batch_size", "augment", "progress", "resume",
                                                             "dataset"}, "defaults typed out, abbreviations, flags"


def test_time_budget_with_distributed_is_one_clear_line(tmp_path, capsys):
    assert cli.main(["train", "--distributed", "--time-budget", "5", "--out", str(tmp_path), "--quiet"]) == 2
    assert "--time-budget does not work with --distributed" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written
