"""Decode any user image into an RGB uint8 array, or fail with a message a person can act on.

Handles JPEG/PNG/WebP and whatever else Pillow reads, EXIF orientation, grayscale, palette,
CMYK, RGBA (composited on white), 16-bit PNG, truncated files and decompression bombs.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.errors import FaceAuditError

__all__ = ["ImageError", "MAX_PIXELS", "MAX_SIDE", "load_image"]

# Refuse anything above this many pixels before decoding it (a 10,000 x 10,000 photo is allowed).
MAX_PIXELS = 120_000_000
# Decoded images are downscaled so that their longest side is at most this many pixels.
MAX_SIDE = 4096


class ImageError(FaceAuditError, ValueError):
    """An input that cannot be used as an image; the message says why."""


def _open(source: str | Path | bytes) -> tuple[Image.Image, str]:
    name = "uploaded file" if isinstance(source, bytes) else str(source)
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with warnings.catch_warnings():
            # Pillow warns above ~89 MP; MAX_PIXELS below is the limit FaceAudit applies.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(stream)
            width, height = image.size
    except FileNotFoundError:
        raise ImageError(f"{name}: file not found") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file (or a format Pillow cannot read)") from None
    except Image.DecompressionBombError as error:
        raise ImageError(f"{name}: refused as a possible decompression bomb ({error})") from None
    except OSError as error:
        raise ImageError(f"{name}: cannot be read ({error})") from None
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"{name}: {width} x {height} pixels is more than the {MAX_PIXELS:,} allowed; "
            "refused as a possible decompression bomb"
        )
    return image, name


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert("RGB")


def load_image(source: str | Path | bytes, *, max_side: int = MAX_SIDE) -> np.ndarray:
    """Decode `source` (a path or the file's bytes) to an upright RGB array.

    Args:
        source: Path of an image file, or its raw bytes (an upload).
        max_side: Longest side of the result; larger images are downscaled.

    Returns:
        `(H, W, 3)` uint8 RGB array, EXIF orientation applied.

    Raises:
        ImageError: missing, non-image, truncated, corrupt or oversized input.
    """
    image, name = _open(source)
    try:
        image.draft("RGB", (max_side, max_side))  # JPEG: decode at reduced scale when much larger
        image = ImageOps.exif_transpose(image)
        image = _to_rgb(image)
    except OSError as error:
        raise ImageError(f"{name}: image data is truncated or corrupt ({error})") from None
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8)
