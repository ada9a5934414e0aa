"""``minigrad predict``: what a trained GoogLeNet sees in your images, the top classes and their probabilities.

    minigrad predict cat.jpg --weights googlenet-1378be20.pth     # torchvision's pretrained ImageNet GoogLeNet
    minigrad predict shape.png --checkpoint runs/shapes            # a run of `minigrad train` (its folder or .npz)

For each image it prints the ``--top`` (5) most probable classes, best first, one per line: the class name,
padded to the longest name shown plus two spaces, and the softmax probability with four decimals. The
shape of it (the numbers here are made up)::

    tabby         0.4812
    tiger cat     0.3020
    Egyptian cat  0.1544
    ...

With several images, each block is headed by the image's path and a colon, and blocks are separated by a
blank line (as ``head`` does with several files).

**--weights** takes torchvision's ``googlenet-1378be20.pth`` (or that state dict as ``.safetensors`` or
``.npz``), read without torch (:mod:`minigrad.models.weights`), into ``inception_v1(variant="torchvision",
transform_input=True)``, the layout those weights were trained in (its auxiliary heads are in the file and
are loaded, though eval mode does not run them). The image is prepared as torchvision's evaluation
transform does: shorter side resized to 256 (bilinear), center crop 224, ``/ 255``, ImageNet's mean/std
normalisation; ``transform_input`` then re-maps that inside the model. The 1,000 class names, in the index
order of the weights, ship with minigrad (``minigrad/models/imagenet_classes.txt``, torchvision's list).

**--checkpoint** takes a run folder or its ``checkpoint.npz``. The network is rebuilt from the run's config
(the checkpoint's own copy, with ``config.json`` beside it filling gaps), the classes are the config's
``classes`` list or, for ``shapes``, ``cifar10`` and ``cifar100``, those datasets' names. The image is
resized (shorter side) and center-cropped to the training images' size and normalised with the training
set's channel mean and std, as ``minigrad train`` normalised its test images; runs record both in
``config["extra"]["preprocess"]``, and for older runs they are recomputed from the training set.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PredictError(RuntimeError):
    """An input ``minigrad predict`` cannot use; the message names the file and what to change."""


def imagenet_classes() -> list[str]:
    """The 1,000 ImageNet-1k class names in the index order of torchvision's weights (shipped with minigrad)."""
    text = resources.files("minigrad.models").joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    names = text.splitlines()
    if len(names) != 1000:
        raise PredictError(f"minigrad/models/imagenet_classes.txt has {len(names)} names, not 1000: reinstall minigrad")
    return names


@dataclass
class Predictor:
    """A model in eval mode and the preparation its inputs need: resize, crop, normalise."""

    model: Any
    classes: list[str]
    resize: int  # the shorter side is scaled to this many pixels first
    crop: tuple[int, int]  # then the central (height, width) window is cut out
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def preprocess(self, path: str | Path) -> numpy.ndarray:
        """One image file as the model's input: (1, 3, crop_h, crop_w) float32, normalised."""
        from minigrad.data import image_io, transforms

        image = image_io.center_crop(image_io.resize_shorter_side(image_io.open_rgb(path), self.resize), self.crop)
        batch = image_io.to_chw_float(image)[None]
        return transforms.Normalize(self.mean, self.std)(batch, None)

    def probabilities(self, batch: numpy.ndarray) -> numpy.ndarray:
        """softmax(model(batch)) along the classes, (N, num_classes) float64."""
        import minigrad

        with minigrad.no_grad():
            logits = self.model(minigrad.tensor(batch)).numpy().astype(numpy.float64)
        shifted = numpy.exp(logits - logits.max(axis=1, keepdims=True))  # minus the max: exp cannot overflow
        return shifted / shifted.sum(axis=1, keepdims=True)

    def top(self, path: str | Path, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` most probable (class name, probability) pairs for one image, best first."""
        probabilities = self.probabilities(self.preprocess(path))[0]
        order = numpy.argsort(-probabilities, kind="stable")[:k]
        return [(self.classes[index], float(probabilities[index])) for index in order]


def format_top(rows: list[tuple[str, float]]) -> str:
    """``name  probability`` lines: names padded to a common width (at least two spaces), four decimals."""
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {probability:.4f}" for name, probability in rows)


# ----- the two sources of a model ------------------------------------------------------------------------
def from_weights(path: str | Path) -> Predictor:
    """torchvision's pretrained ImageNet GoogLeNet (``googlenet-1378be20.pth``, or it as .safetensors/.npz)."""
    from minigrad.models import inception_v1
    from minigrad.models.weights import read_state_dict

    try:
        state = read_state_dict(path)
    except FileNotFoundError:
        raise PredictError(f"--weights {path}: no such file") from None
    model = inception_v1(num_classes=1000, variant="torchvision", transform_input=True, init_weights=False)
    try:
        model.load_state_dict(state)
    except (KeyError, ValueError) as error:
        raise PredictError(f"--weights {path} is not torchvision's ImageNet googlenet state dict ({error}). For "
                           f"a run of `minigrad train` use --checkpoint instead") from None
    return Predictor(model.eval(), imagenet_classes(), 256, (224, 224), IMAGENET_MEAN, IMAGENET_STD)


def from_checkpoint(path: str | Path) -> Predictor:
    """The model of a ``minigrad train`` run, with the run's classes and test-time preprocessing."""
    from minigrad.checkpoint import CheckpointError, load_checkpoint

    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.npz"
    if not path.is_file():
        raise PredictError(f"--checkpoint {path}: no such file; give a run folder of `minigrad train` or its "
                           f"checkpoint.npz")
    _require_training_checkpoint(path)
    try:
        checkpoint = load_checkpoint(path)
    except CheckpointError as error:
        raise PredictError(str(error).replace("start again without --resume", "train the run again")) from None
    saved = {key: value for key, value in (checkpoint["meta"].get("config") or {}).items() if value is not None}
    config = {**_read_config_json(path.parent / "config.json"), **saved}  # the checkpoint's values win
    if not config:
        raise PredictError(f"{path} records no run config and there is no config.json beside it; predict needs to "
                           f"know the network's options (written by `minigrad train`)")
    state = checkpoint["model"]
    if "fc.weight" not in state:
        raise PredictError(f"{path} holds no GoogLeNet classifier (fc.weight); was it written by `minigrad train`?")
    num_classes = state["fc.weight"].shape[0]
    classes = _run_classes(config, num_classes, path)
    train_config = _train_config(config)
    from minigrad import train

    model = train.build_model(train_config, num_classes)
    try:
        model.load_state_dict(state)
    except (KeyError, ValueError) as error:
        raise PredictError(f"{path} does not fit the network its config describes ({error})") from None
    size, mean, std = _run_preprocessing(config, train_config, path)
    return Predictor(model.eval(), classes, max(size), size, mean, std)


def _require_training_checkpoint(path: Path) -> None:
    import zipfile

    try:
        with numpy.load(path, allow_pickle=False) as archive:
            names = archive.files
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
        raise PredictError(f"--checkpoint {path} is not a readable .npz checkpoint ({type(error).__name__}: "
                           f"{error}); for a state dict of torchvision's googlenet use --weights") from None
    if "meta" not in names or not any(name.startswith("model/") for name in names):
        raise PredictError(f"--checkpoint {path} is an .npz but not a checkpoint of `minigrad train` (no meta and "
                           f"model/ entries); for a plain state dict of torchvision's googlenet use --weights")


def _read_config_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PredictError(f"{path} is not valid JSON ({error}); restore it or delete it (the checkpoint keeps "
                           f"its own copy of the config)") from None
    return config if isinstance(config, dict) else {}


def _run_classes(config: dict[str, Any], num_classes: int, path: Path) -> list[str]:
    """The run's ``classes`` list, else the known names of its built-in dataset."""
    classes = config.get("classes")
    if classes is None:
        from minigrad.data import CIFAR10, CIFAR100
        from minigrad.data.shapes import SHAPES

        known = {"shapes": list(SHAPES)[:num_classes], "cifar10": list(CIFAR10.class_names),
                 "cifar100": list(CIFAR100.class_names)}
        classes = known.get(config.get("dataset"))
        if classes is None:
            raise PredictError(f"the run of {path} (dataset {config.get('dataset')!r}) records no class names "
                               f"(a \"classes\" list in its config.json)")
    if len(classes) != num_classes:
        raise PredictError(f"the run of {path} names {len(classes)} classes but its network has {num_classes} "
                           f"outputs; is config.json from another run?")
    return [str(name) for name in classes]


def _train_config(config: dict[str, Any]) -> Any:
    from minigrad.train import TrainConfig

    known = {field.name for field in fields(TrainConfig)}
    return replace(TrainConfig(**{key: value for key, value in config.items() if key in known}), device="cpu")


def _run_preprocessing(config: dict[str, Any], train_config: Any,
                       path: Path) -> tuple[tuple[int, int], tuple[float, ...], tuple[float, ...]]:
    """(image size, mean, std) as the run prepared its test images: recorded, or recomputed from the data."""
    recorded = (config.get("extra") or {}).get("preprocess")
    if recorded:
        return tuple(recorded["size"]), tuple(recorded["mean"]), tuple(recorded["std"])
    from minigrad import train

    try:
        train_set, _ = train.build_datasets(train_config)
    except (OSError, ValueError, RuntimeError) as error:
        if train_config.dataset in ("cifar10", "cifar100"):  # the published statistics of the same images
            from minigrad.data import CIFAR10, CIFAR100

            dataset = CIFAR10 if train_config.dataset == "cifar10" else CIFAR100
            print(f"minigrad predict: the run of {path} predates recorded preprocessing and {error}; using "
                  f"{train_config.dataset}'s published channel mean and std", file=sys.stderr)
            return (32, 32), dataset.mean, dataset.std
        raise PredictError(f"the run of {path} predates recorded preprocessing, and its training data, needed to "
                           f"recompute the normalisation, cannot be read ({error})") from None
    mean, std = train_set.channel_mean_std()
    return tuple(train_set.images.shape[-2:]), mean, std


# ----- the command line ----------------------------------------------------------------------------------
def predict_command(args: argparse.Namespace) -> int:
    """Print the top classes of every image; a bad input is one line on stderr and exit status 1."""
    if (args.weights is None) == (args.checkpoint is None):
        print("minigrad predict: give exactly one of --weights FILE (torchvision's googlenet) or --checkpoint RUN",
              file=sys.stderr)
        return 2
    if args.top < 1:
        print(f"minigrad predict: --top must be at least 1, got {args.top}", file=sys.stderr)
        return 2
    import pickle

    failures = (PredictError, OSError, ValueError, TypeError, ImportError, pickle.UnpicklingError)
    try:
        predictor = from_weights(args.weights) if args.weights else from_checkpoint(args.checkpoint)
    except failures as error:
        print(f"minigrad predict: {error}", file=sys.stderr)
        return 1
    status = 0
    for number, image in enumerate(args.images):
        try:
            lines = format_top(predictor.top(image, min(args.top, len(predictor.classes))))
        except failures as error:  # a bad image: say so and go on with the others
            print(f"minigrad predict: {error}", file=sys.stderr)
            status = 1
            continue
        if len(args.images) > 1:
            lines = ("\n" if number else "") + f"{image}:\n{lines}"
        print(lines, flush=True)
    return status


def register_command(subparsers: Any) -> None:
    """Add ``minigrad predict IMAGE... (--weights FILE | --checkpoint RUN)`` to the CLI's subcommands."""
    parser = subparsers.add_parser(
        "predict", help="print the top classes of images, with torchvision's pretrained googlenet or a trained run",
        description="Classify image files and print the most probable classes, best first: `name  probability`.",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    parser.add_argument("--weights", metavar="FILE", default=None,
                        help="torchvision's ImageNet googlenet weights (googlenet-1378be20.pth, or .safetensors/.npz)")
    parser.add_argument("--checkpoint", metavar="RUN", default=None,
                        help="a run of `minigrad train`: its folder or its checkpoint.npz")
    parser.add_argument("--top", type=int, default=5, help="how many classes to print per image (default 5)")
    parser.set_defaults(handler=predict_command)
