"""Hold out a validation split of an image folder: DEST/train/<class>/ and DEST/val/<class>/ as symlinks.

    python -m benchmarks.split_folder /work/data/cifar10-jpeg/train /work/data/cifar10-split --val-per-class 500

SOURCE holds one subfolder per class (``SOURCE/<class>/<image>``). From each class, ``--val-per-class``
images chosen with ``numpy.random.default_rng(--seed)`` (from the class's files in sorted order) go to
``DEST/val/<class>/``, the rest to ``DEST/train/<class>/``; each entry is a symbolic link to the original file,
so nothing is copied. Then ``minigrad train --dataset folder --data-dir DEST`` trains on train/ and measures
on val/. The same SOURCE, count and seed always give the same split. DEST must not exist yet.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy


def split(source: Path, dest: Path, val_per_class: int, seed: int) -> dict[str, tuple[int, int]]:
    """Make the two symlink trees; returns {class: (train count, val count)}."""
    classes = sorted(entry.name for entry in os.scandir(source) if entry.is_dir() and not entry.name.startswith("."))
    if not classes:
        raise SystemExit(f"split_folder: {source} has no class subfolders")
    if dest.exists():
        raise SystemExit(f"split_folder: {dest} exists; remove it or choose another destination")
    rng = numpy.random.default_rng(seed)
    counts = {}
    for name in classes:
        files = sorted(entry.name for entry in os.scandir(source / name) if entry.is_file())
        if len(files) <= val_per_class:
            raise SystemExit(f"split_folder: {source / name} has {len(files)} files, not more than {val_per_class}")
        held_out = set(rng.choice(len(files), size=val_per_class, replace=False).tolist())
        for split_name in ("train", "val"):
            (dest / split_name / name).mkdir(parents=True)
        for index, file in enumerate(files):
            split_name = "val" if index in held_out else "train"
            (dest / split_name / name / file).symlink_to((source / name / file).resolve())
        counts[name] = (len(files) - val_per_class, val_per_class)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path, help="a folder with one subfolder per class")
    parser.add_argument("dest", type=Path, help="where train/ and val/ are made (must not exist)")
    parser.add_argument("--val-per-class", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    counts = split(args.source.expanduser(), args.dest.expanduser(), args.val_per_class, args.seed)
    train_total, val_total = (sum(pair[i] for pair in counts.values()) for i in (0, 1))
    print(f"{args.dest}: {len(counts)} classes, {train_total} train / {val_total} val images (seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
