"""A run's metrics on disk: ``metrics.csv`` (one row per epoch) and ``curves.png`` (loss and accuracy per epoch).

Both are rewritten whole after every epoch, through a temporary file renamed into place, so a run stopped
at any moment leaves the previous complete version.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

METRIC_COLUMNS = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "images_per_s"]


def write_metrics_csv(history: list[dict[str, float]], path: str | Path) -> None:
    """One row per epoch (written whole each time, through a temporary file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
    os.replace(tmp, path)


def plot_curves(history: list[dict[str, float]], path: str | Path) -> None:
    """Loss and accuracy, train and test, per epoch, side by side."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(9, 3.5))
    for split, style in (("train", "-o"), ("test", "--s")):
        loss_axis.plot(epochs, [row[f"{split}_loss"] for row in history], style, label=split)
        acc_axis.plot(epochs, [100 * row[f"{split}_acc"] for row in history], style, label=split)
    loss_axis.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    acc_axis.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy", ylim=(0, 100))
    for axis in (loss_axis, acc_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp.png")
    figure.savefig(tmp, dpi=110)
    plt.close(figure)
    os.replace(tmp, path)
