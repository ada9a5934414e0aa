"""``minigrad predict``: the top-5 lines of a training run's model and of torchvision's googlenet layout (the same
top-5 as the torch twin on the same preprocessed input), class names from the run or the shipped ImageNet
list, the run's preprocessing recorded or recomputed, and every bad input named."""

from __future__ import annotations

import configparser
import json
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from minigrad import cli, optim, predict, train
from minigrad.checkpoint import save_checkpoint
from minigrad.data import CIFAR10, SyntheticShapes
from minigrad.train import TrainConfig

LINE = re.compile(r"^(?P<name>\S.*?) {2,}(?P<probability>[01]\.\d{4})$")
ROUNDING = 0.00005  # the printed probabilities have four decimals


def run_predict(capsys, *arguments) -> tuple[int, str, str]:
    status = cli.main(["predict", *map(str, arguments)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def parse_block(lines: list[str]) -> list[tuple[str, float]]:
    rows = []
    for line in lines:
        match = LINE.match(line)
        assert match, f"not a `name  probability` line: {line!r}"
        rows.append((match["name"], float(match["probability"])))
    return rows


def assert_top_lines(rows: list[tuple[str, float]], classes: list[str], count: int = 5) -> None:
    assert len(rows) == count
    assert all(name in classes for name, _ in rows)
    probabilities = [probability for _, probability in rows]
    assert probabilities == sorted(probabilities, reverse=True)  # best first
    assert sum(probabilities) <= 1 + count * ROUNDING


def photo(tmp_path: Path, name: str, size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Path:
    """A smooth, photo-like picture (gradients, a blob, noise) written as PNG or JPEG by its name."""
    width, height = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(size)
    blob = np.exp(-((x - rng.random()) ** 2 + (y - rng.random()) ** 2) * 8)
    channels = [0.5 + 0.4 * np.sin(6 * x * rng.random() + 3 * y + phase) * blob for phase in (0, 2, 4)]
    pixels = np.clip(np.stack(channels, axis=2) * 255 + rng.normal(0, 8, (height, width, 3)), 0, 255)
    image = Image.fromarray(pixels.astype(np.uint8)).convert(mode)
    path = tmp_path / name
    image.save(path)
    return path


# ----- a run of `minigrad train` ---------------------------------------------------------------------------
def shapes_config(out: Path, **overrides) -> TrainConfig:
    train_set = SyntheticShapes(64, seed=0)
    mean, std = train_set.channel_mean_std()
    recorded = {"preprocess": {"size": [32, 32], "mean": np.float32(mean).tolist(), "std": np.float32(std).tolist()}}
    options = dict(width=0.125, train_size=64, test_size=32, out=str(out), progress=False, extra=recorded)
    options.update(overrides)
    return TrainConfig(**options)


def write_run(out: Path, config: TrainConfig, classes: list[str] | None = None, num_classes: int = 10):
    """A checkpoint and config.json as `minigrad train` leaves them, with a model whose classes are well apart."""
    model = train.build_model(config, num_classes)
    model.fc.bias.data[...] = np.linspace(2, -2, num_classes)  # distinct probabilities, best first in label order
    save_checkpoint(out / "checkpoint.npz", model=model, optimizer=optim.AdamW(model.parameters()), config=config)
    saved = asdict(config) | ({"classes": classes} if classes is not None else {})
    (out / "config.json").write_text(json.dumps(saved))
    return model.eval()


def expected_top5(model, path: Path, mean, std, classes: list[str]) -> list[tuple[str, float]]:
    """The run's model on the image, prepared step by step here: shorter side to 32 (bilinear), central 32x32,
    / 255, (x - mean) / std, softmax."""
    import minigrad

    image = Image.open(path).convert("RGB")
    width, height = image.size
    short = min(width, height)
    image = image.resize((int(32 * width / short), int(32 * height / short)), Image.BILINEAR)
    left, top = round((image.size[0] - 32) / 2), round((image.size[1] - 32) / 2)
    pixels = np.asarray(image.crop((left, top, left + 32, top + 32)), dtype=np.float32) / np.float32(255)
    batch = pixels.transpose(2, 0, 1)[None]
    batch = (batch - np.float32(mean).reshape(1, 3, 1, 1)) / np.float32(std).reshape(1, 3, 1, 1)
    with minigrad.no_grad():
        logits = model(minigrad.tensor(batch)).numpy().astype(np.float64)[0]
    probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    order = np.argsort(-probabilities)[:5]
    return [(classes[index], round(float(probabilities[index]), 4)) for index in order]


def test_checkpoint_prints_the_runs_top5_for_each_image(tmp_path, capsys):
    config = shapes_config(tmp_path)
    model = write_run(tmp_path, config)
    images = [photo(tmp_path, "wide.png", (48, 40)), photo(tmp_path, "grey.jpg", (50, 64), mode="L", seed=1),
              photo(tmp_path, "small.png", (20, 12), mode="RGBA", seed=2)]  # upscaled to 53x32, then cropped
    status, out, err = run_predict(capsys, *images, "--checkpoint", tmp_path)
    assert status == 0 and err == ""
    blocks = out.rstrip("\n").split("\n\n")
    assert len(blocks) == 3
    classes = list(SyntheticShapes(8).classes)
    preprocess = config.extra["preprocess"]
    for block, path in zip(blocks, images):
        header, *lines = block.split("\n")
        assert header == f"{path}:"
        rows = parse_block(lines)
        assert_top_lines(rows, classes)
        assert rows == expected_top5(model, path, preprocess["mean"], preprocess["std"], classes)
    status, single, _ = run_predict(capsys, images[0], "--checkpoint", tmp_path / "checkpoint.npz", "--top", "3")
    assert status == 0  # one image: no header, and the names padded to the widest of the three shown
    assert parse_block(single.splitlines()) == parse_block(blocks[0].split("\n")[1:4])


def test_class_names_come_from_the_run_then_from_its_dataset(tmp_path, capsys):
    names = [f"my class {index}" for index in range(10)]
    write_run(tmp_path, shapes_config(tmp_path, dataset="folder"), classes=names)
    image = photo(tmp_path, "a.png", (40, 40))
    status, out, _ = run_predict(capsys, image, "--checkpoint", tmp_path)
    assert status == 0 and [name for name, _ in parse_block(out.splitlines())] == names[:5]

    cifar = tmp_path / "cifar"
    cifar.mkdir()
    write_run(cifar, shapes_config(cifar, dataset="cifar10"))
    status, out, _ = run_predict(capsys, image, "--checkpoint", cifar)
    assert status == 0 and [name for name, _ in parse_block(out.splitlines())] == list(CIFAR10.class_names[:5])

    unnamed = tmp_path / "unnamed"
    unnamed.mkdir()
    write_run(unnamed, shapes_config(unnamed, dataset="folder"))
    status, _, err = run_predict(capsys, image, "--checkpoint", unnamed)
    assert status == 1 and "records no class names" in err
    write_run(unnamed, shapes_config(unnamed, dataset="folder"), classes=["only", "three", "names"])
    status, _, err = run_predict(capsys, image, "--checkpoint", unnamed)
    assert status == 1 and "names 3 classes but its network has 10 outputs" in err


def test_runs_without_recorded_preprocessing_recompute_it(tmp_path, capsys):
    write_run(tmp_path, shapes_config(tmp_path, extra={}))
    predictor = predict.from_checkpoint(tmp_path)
    mean, std = SyntheticShapes(64, seed=0).channel_mean_std()  # the training set of train_size=64, seed 0
    assert predictor.mean == mean and predictor.std == std and predictor.crop == (32, 32)

    cifar = tmp_path / "cifar"
    cifar.mkdir()
    write_run(cifar, shapes_config(cifar, dataset="cifar10", data_dir=str(tmp_path / "no-data"), extra={}))
    predictor = predict.from_checkpoint(cifar)
    assert predictor.mean == CIFAR10.mean and predictor.std == CIFAR10.std
    assert "using cifar10's published channel mean and std" in capsys.readouterr().err


def test_a_real_run_records_what_predict_needs(tmp_path, capsys):
    train.run(shapes_config(tmp_path, extra={}, epochs=1, train_size=32, test_size=16, batch_size=16))
    saved = json.loads((tmp_path / "config.json").read_text())
    mean, std = SyntheticShapes(32, seed=0).channel_mean_std()
    assert saved["extra"]["preprocess"] == {"size": [32, 32], "mean": np.float32(mean).tolist(),
                                            "std": np.float32(std).tolist()}
    status, out, _ = run_predict(capsys, photo(tmp_path, "a.jpg", (33, 35)), "--checkpoint", tmp_path)
    assert status == 0
    assert_top_lines(parse_block(out.splitlines()), list(SyntheticShapes(8).classes))


def test_bad_inputs_get_one_clear_line(tmp_path, capsys):
    write_run(tmp_path, shapes_config(tmp_path))
    good = photo(tmp_path, "good.png", (32, 32))
    (tmp_path / "notes.png").write_text("not an image")
    status, out, err = run_predict(capsys, tmp_path / "missing.jpg", tmp_path / "notes.png", good,
                                   "--checkpoint", tmp_path)
    assert status == 1
    assert "missing.jpg: no such image file" in err and "notes.png is not an image file" in err
    assert f"{good}:" in out and len(parse_block(out.strip().split("\n")[1:])) == 5  # the good one still runs

    status, _, err = run_predict(capsys, good, "--checkpoint", tmp_path / "elsewhere")
    assert status == 1 and "no such file" in err
    (tmp_path / "weights.pth").write_bytes(b"PK\x03\x04 not a checkpoint")
    status, _, err = run_predict(capsys, good, "--checkpoint", tmp_path / "weights.pth")
    assert status == 1 and "use --weights" in err
    np.savez(tmp_path / "state.npz", **{"fc.weight": np.zeros((10, 8), np.float32)})
    status, _, err = run_predict(capsys, good, "--checkpoint", tmp_path / "state.npz")
    assert status == 1 and "not a checkpoint of `minigrad train`" in err and "--weights" in err
    truncated = tmp_path / "cut" / "checkpoint.npz"
    truncated.parent.mkdir()
    truncated.write_bytes((tmp_path / "checkpoint.npz").read_bytes()[:3000])
    status, _, err = run_predict(capsys, good, "--checkpoint", truncated.parent)
    assert status == 1 and "cut/checkpoint.npz" in err
    for arguments in ([good], [good, "--checkpoint", tmp_path, "--weights", "x.pth"],
                      [good, "--checkpoint", tmp_path, "--top", "0"]):
        status, _, err = run_predict(capsys, *arguments)
        assert status == 2 and err.startswith("minigrad predict: ")


# ----- torchvision's googlenet -----------------------------------------------------------------------------
def test_the_imagenet_class_names_ship_with_minigrad():
    names = predict.imagenet_classes()
    assert len(names) == 1000 and len(set(names)) == 1000
    known = {0: "tench", 1: "goldfish", 207: "golden retriever", 281: "tabby", 285: "Egyptian cat",
             409: "analog clock", 517: "crane", 134: "crane bird", 954: "banana", 999: "toilet tissue"}
    assert {index: names[index] for index in known} == known
    setup = configparser.ConfigParser()
    setup.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    assert "imagenet_classes.txt" in setup["options.package_data"]["minigrad.models"]  # installed, not only here


def test_weights_give_the_torch_twins_top5(tmp_path, capsys, torch):
    from tests.models import torch_googlenet

    torch.manual_seed(3)
    twin = torch_googlenet.calibrate_batch_norm(
        torch_googlenet.torch_googlenet(variant="torchvision", transform_input=True), size=112)
    weights = tmp_path / "googlenet-1378be20.pth"
    torch.save(twin.state_dict(), weights)  # aux heads included, as torchvision publishes it
    image = photo(tmp_path, "photo.jpg", (300, 260))

    status, out, err = run_predict(capsys, image, "--weights", weights)
    assert status == 0 and err == ""
    rows = parse_block(out.splitlines())
    classes = predict.imagenet_classes()
    assert_top_lines(rows, classes)

    # The preprocessed input, step by step as torchvision's eval transform: Resize(256) -> 295x256 (bilinear),
    # CenterCrop(224) at left round(35.5) = 36, top 16; ToTensor; Normalize(ImageNet mean, std).
    pixels = Image.open(image).convert("RGB").resize((295, 256), Image.BILINEAR).crop((36, 16, 260, 240))
    tensor = np.asarray(pixels, dtype=np.float32).transpose(2, 0, 1)[None] / np.float32(255)
    mean = np.float32(predict.IMAGENET_MEAN).reshape(1, 3, 1, 1)
    expected_input = (tensor - mean) / np.float32(predict.IMAGENET_STD).reshape(1, 3, 1, 1)
    predictor_input = predict.Predictor(None, classes, 256, (224, 224), predict.IMAGENET_MEAN,
                                        predict.IMAGENET_STD).preprocess(image)
    assert np.array_equal(predictor_input, expected_input)

    with torch.no_grad():
        logits = twin(torch.from_numpy(expected_input)).double()[0]
    probabilities = torch.softmax(logits, 0).numpy()
    order = np.argsort(-probabilities)
    gaps = -np.diff(logits.numpy()[order[:6]])
    assert gaps.min() > 1e-3 * logits.abs().max().item()  # no near-tie that float32 rounding could reorder
    assert [name for name, _ in rows] == [classes[index] for index in order[:5]]
    for (_, printed), index in zip(rows, order):
        assert abs(printed - probabilities[index]) <= ROUNDING + 1e-4 * probabilities[index]


def test_weights_that_are_not_torchvisions_googlenet_are_named(tmp_path, capsys):
    image = photo(tmp_path, "photo.png", (40, 40))
    status, _, err = run_predict(capsys, image, "--weights", tmp_path / "missing.pth")
    assert status == 1 and "missing.pth: no such file" in err
    model = train.build_model(shapes_config(tmp_path), 10)
    np.savez(tmp_path / "small.npz", **model.state_dict())
    status, _, err = run_predict(capsys, image, "--weights", tmp_path / "small.npz")
    assert status == 1 and "is not torchvision's ImageNet googlenet state dict" in err and "--checkpoint" in err
