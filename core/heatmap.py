"""Heat maps over face chips: the overlay every explanation and saliency view draws, and its colour legend.

Kept apart from `core.explain` so that pages which only draw stored maps render without importing torch.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["overlay", "colour_bar"]


def overlay(chip: np.ndarray, attribution: np.ndarray, alpha: float = 0.5, scale: float | None = None) -> np.ndarray:
    """Blend the positive part of `attribution` over the chip as a heat map.

    `scale` is the value drawn at full strength; default: the map's 99th percentile.
    """
    positive = np.clip(attribution, 0, None)
    scale = scale or np.percentile(positive, 99) or positive.max() or 1.0
    heat = cv2.applyColorMap((np.clip(positive / scale, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
    weight = (alpha * np.clip(positive / scale, 0, 1))[..., None]
    return (chip * (1 - weight) + heat * weight).astype(np.uint8)


def colour_bar(width: int = 240, height: int = 12) -> np.ndarray:
    """The heat-map colours `overlay` draws, from no evidence (left) to full strength (right): a legend image."""
    ramp = np.linspace(0, 255, width).astype(np.uint8)[None].repeat(height, axis=0)
    return cv2.cvtColor(cv2.applyColorMap(ramp, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
