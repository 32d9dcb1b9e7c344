"""The report's pictures as PNG bytes: loss curve and robustness curve (matplotlib, Agg, imported
lazily) and the panels of adversarial examples (Pillow)."""

from __future__ import annotations

import io
import math
from typing import Any, Optional, Sequence

import numpy as np

from .text import clean_text

WIDTH_IN, DPI = 7.5, 110
_ATTACK_COLOURS = ("#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
PANEL_PIXELS = 84  # on-screen size of one example panel (nearest-neighbour upscaling)


def _label(value: object) -> str:
    """Text for a matplotlib label: control characters out, ``$`` literal (not mathtext)."""
    return clean_text(value).replace("$", r"\$")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def smoothing_window(count: int) -> int:
    """Iterations in the moving mean drawn over `count` losses (1: no mean is drawn)."""
    return max(1, min(50, count // 10))


def loss_png(iterations: Sequence[float], losses: Sequence[float],
             validation: Sequence[tuple[float, float, float]] = ()) -> bytes:
    """Loss per iteration with its moving average; a second panel for (iteration, clean, robust)
    validation accuracies when training recorded them."""
    plt = _pyplot()
    if validation:
        fig, (ax, val_ax) = plt.subplots(2, 1, figsize=(WIDTH_IN, 5.2), sharex=True,
                                         gridspec_kw={"height_ratios": (3, 2)})
    else:
        fig, ax = plt.subplots(figsize=(WIDTH_IN, 3.4))
    try:
        window = smoothing_window(len(losses))
        ax.plot(iterations, losses, color="#9ecae1" if window > 1 else "#08519c", linewidth=0.9 if window > 1 else 1.8,
                marker="o" if len(losses) <= 30 else None, markersize=3, label="loss")
        if window > 1:
            smooth = np.convolve(np.asarray(losses, float), np.ones(window) / window, mode="valid")
            ax.plot(list(iterations)[window - 1:], smooth, color="#08519c", linewidth=1.8, label=f"mean of {window}")
        ax.set_ylabel("training loss")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
        if validation:
            steps = [row[0] for row in validation]
            val_ax.plot(steps, [row[1] for row in validation], "o-", color="#2ca02c", label="validation, clean")
            val_ax.plot(steps, [row[2] for row in validation], "s-", color="#d62728", label="validation, robust")
            val_ax.set_ylim(-0.02, 1.02)
            val_ax.set_ylabel("accuracy")
            val_ax.grid(alpha=0.3)
            val_ax.legend(loc="best", fontsize=8)
            val_ax.set_xlabel("iteration")
        else:
            ax.set_xlabel("iteration")
        fig.tight_layout()
        return _png(fig)
    finally:
        plt.close(fig)


def curve_png(eps: Sequence[float], series: dict[str, Sequence[Optional[float]]], *, norm: str,
              clean: Optional[float], chance: Optional[float],
              certified: Optional[tuple[str, Sequence[float], Sequence[float]]] = None) -> bytes:
    """Robust accuracy against eps: each attack, the worst case (thick grey), clean accuracy and
    chance as lines, and certified accuracy (a lower bound) as a dashed line when given."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 3.8))
    try:
        colours = iter(_ATTACK_COLOURS * 4)
        for label, values in series.items():
            points = [(e, v) for e, v in zip(eps, values) if v is not None]
            worst = label == "worst case"
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=_label(label),
                    linewidth=4 if worst else 1.5, color="#b0b0b0" if worst else next(colours), zorder=1 if worst else 2)
        if certified is not None:
            method, cert_eps, cert_values = certified
            ax.plot(cert_eps, cert_values, marker="D", linestyle="--", color="#2ca02c",
                    label=f"certified ({_label(method)})")
        if clean is not None:
            ax.axhline(clean, color="#2ca02c", linestyle=":", linewidth=1, label=f"clean ({clean:.1%})")
        if chance is not None:
            ax.axhline(chance, color="grey", linestyle="--", linewidth=0.8, label=f"chance ({chance:.0%})")
        ax.set_xlabel(f"eps ({_label(norm)})")
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
        fig.tight_layout()
        return _png(fig)
    finally:
        plt.close(fig)


def magnification(perturbations: np.ndarray) -> int:
    """The whole number nearest the factor that makes the largest absolute change reach half the range (at least 1)."""
    largest = float(np.max(np.abs(perturbations))) if perturbations.size else 0.0
    return 1 if largest <= 0 or not math.isfinite(largest) else max(1, round(0.5 / largest))


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """(C, H, W) float in [0, 1] -> (H, W) or (H, W, 3) uint8."""
    pixels = np.rint(np.clip(np.nan_to_num(image, nan=0.0), 0.0, 1.0) * 255).astype(np.uint8)
    return pixels[0] if pixels.shape[0] == 1 else np.transpose(pixels, (1, 2, 0))


def _panel(pixels: np.ndarray) -> Any:
    from PIL import Image

    image = Image.fromarray(pixels)
    scale = max(1, PANEL_PIXELS // max(image.size))
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


def _image_png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def example_pngs(original: np.ndarray, adversarial: np.ndarray, factor: int) -> tuple[bytes, bytes, bytes, bytes]:
    """PNGs of the clean image, the adversarial one, the perturbation (0.5 + factor × change: grey is
    no change) and the three side by side with white gaps."""
    from PIL import Image

    panels = [_panel(_to_uint8(original)), _panel(_to_uint8(adversarial)),
              _panel(_to_uint8(0.5 + factor * (adversarial - original)))]
    gap = 6
    mode = "RGB" if any(p.mode == "RGB" for p in panels) else "L"
    strip = Image.new(mode, (sum(p.width for p in panels) + gap * 2, panels[0].height), "white")
    x = 0
    for panel in panels:
        strip.paste(panel.convert(mode), (x, 0))
        x += panel.width + gap
    return (*(_image_png(p) for p in panels), _image_png(strip))
