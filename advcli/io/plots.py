"""PNG figures: training-loss curves, grids of predictions and robustness curves.

Matplotlib is imported lazily; every figure is written atomically (:mod:`advcli.io.atomic`). Text
that comes from users or data (class names, run and dataset names) is drawn as it is, never parsed
as mathtext (a class named ``$x^$`` would otherwise break the figure).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .atomic import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    """Write `fig` to `path` as PNG, atomically, and close it."""
    plt = _pyplot()
    try:
        with atomic_path(path, suffix=".png") as temporary:
            fig.savefig(temporary, format="png")
    finally:
        plt.close(fig)


def save_loss_curve(history: Sequence[dict[str, Any]], path: Path, *, title: str = "Training loss") -> None:
    """Per-iteration loss with a moving average; when the history holds validation accuracies
    (guarded adversarial training), a second panel shows them."""
    plt = _pyplot()
    iterations = np.array([row["iteration"] for row in history], dtype=float)
    losses = np.array([row["loss"] for row in history], dtype=float)
    validated = [row for row in history if row.get("val_robust_accuracy") not in (None, "")]
    if validated:
        fig, (ax, val_ax) = plt.subplots(2, 1, figsize=(7, 6.5), dpi=100, sharex=True,
                                         gridspec_kw={"height_ratios": (3, 2)})
        _plot_validation(val_ax, validated)
    else:
        fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if len(losses):
        ax.plot(iterations, losses, color="#9ecae1", linewidth=0.8, label="loss")
        window = max(1, min(50, len(losses) // 10))
        if window > 1:
            smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
            ax.plot(iterations[window - 1:], smooth, color="#08519c", linewidth=1.6, label=f"mean of {window}")
        ax.legend(loc="upper right")
    if not validated:
        ax.set_xlabel("Iteration")
    ax.set_ylabel("Loss")
    ax.set_title(title, parse_math=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def _plot_validation(ax: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Clean and robust validation accuracy at each validation point."""
    iterations = [float(row["iteration"]) for row in rows]
    ax.plot(iterations, [float(row["val_accuracy"]) for row in rows], "o-", color="#31a354", label="validation, clean")
    ax.plot(iterations, [float(row["val_robust_accuracy"]) for row in rows], "s-", color="#de2d26",
            label="validation, robust (PGD)")
    if any(row.get("val_certified_accuracy") not in (None, "") for row in rows):
        ax.plot(iterations, [float(row.get("val_certified_accuracy") or "nan") for row in rows], "^-",
                color="#3182bd", label="validation, certified")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("Iteration")
    ax.set_ylabel("Accuracy")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)


def save_prediction_grid(
    images: np.ndarray,
    predictions: Sequence[int],
    labels: Sequence[int],
    classes: Sequence[str],
    path: Path,
    *,
    rows: int = 4,
    cols: int = 4,
    seed: int = 0,
) -> None:
    """A rows×cols grid of random images titled with the predicted class: green right, red wrong."""
    plt = _pyplot()
    count = min(rows * cols, len(images))
    picks = np.random.default_rng(seed).choice(len(images), size=count, replace=False) if count else []
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.1 * rows), dpi=100)
    for slot, ax in enumerate(np.asarray(axes).ravel()):
        ax.axis("off")
        if slot >= count:
            continue
        index = int(picks[slot])
        image = np.clip(np.asarray(images[index], dtype=np.float32), 0, 1)
        if image.shape[0] == 1:
            ax.imshow(image[0], cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(np.transpose(image, (1, 2, 0)))
        correct = int(predictions[index]) == int(labels[index])
        ax.set_title(f"Prediction: {classes[int(predictions[index])]}", color="green" if correct else "red", fontsize=9,
                     parse_math=False)
    fig.tight_layout()
    _save(fig, path)


def save_robustness_curve(
    eps: Sequence[float],
    series: dict[str, Sequence[float]],
    path: Path,
    *,
    title: str = "Robust accuracy",
    clean_accuracy: Optional[float] = None,
    chance: Optional[float] = None,
    ylabel: str = "Robust accuracy",
) -> None:
    """Robust accuracy (or another accuracy, `ylabel`) against eps, one line per series, with clean
    accuracy and chance marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for label, values in series.items():
        worst = label == "worst case"
        ax.plot(eps, values, marker="o", linewidth=3.5 if worst else 1.4, color="#bbbbbb" if worst else None,
                zorder=1 if worst else 2, label=label)
    if clean_accuracy is not None:
        ax.axhline(clean_accuracy, color="#2ca02c", linestyle=":", linewidth=1, label=f"clean ({clean_accuracy:.3f})")
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label=f"chance ({chance:.2f})")
    ax.set_xlabel("eps")
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=10, parse_math=False)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    _save(fig, Path(path))
