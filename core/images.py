"""Decode any user image into an RGB uint8 array, or fail with a message a person can act on.

Handles JPEG/PNG/WebP and whatever else Pillow reads, EXIF orientation, grayscale, palette,
CMYK, RGBA (composited on white), 16-bit and 32-bit (integer or float) images, truncated files and
decompression bombs. Memory stays bounded: a file is refused from its header above `MAX_PIXELS`; a JPEG
is decoded at a reduced scale when much larger than `MAX_SIDE`; any other format is decoded at full size
only up to `MAX_DECODED_PIXELS` (about 200 MB at 32 bits per pixel).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.errors import FaceAuditError

__all__ = ["ImageError", "MAX_PIXELS", "MAX_DECODED_PIXELS", "MAX_SIDE", "load_image"]

# Refuse anything above this many pixels before decoding it (a 10,000 x 10,000 JPEG is allowed).
MAX_PIXELS = 120_000_000
# Refuse to decode more pixels than this at full size (JPEGs are reduced while decoding; other formats cannot be).
MAX_DECODED_PIXELS = 40_000_000
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
    except (OSError, ValueError, SyntaxError, EOFError) as error:  # what Pillow's format plugins raise on bad headers
        raise ImageError(f"{name}: cannot be read ({type(error).__name__}: {error})") from None
    if width < 1 or height < 1:
        raise ImageError(f"{name}: the image is {width} x {height} pixels (empty)")
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"{name}: {width} x {height} pixels is more than the {MAX_PIXELS:,} allowed; "
            "refused as a possible decompression bomb"
        )
    return image, name


def _to_8bit(image: Image.Image) -> Image.Image:
    """Grey levels of 16-bit, 32-bit integer or float images mapped onto 0-255 (Pillow's own conversion clips them)."""
    array = np.asarray(image)
    if array.dtype.kind == "f":
        array = np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(array.min()), float(array.max())
    if array.dtype.kind == "f" and low >= 0 and high <= 1.0:
        low, high = 0.0, 1.0
    elif low >= 0 and high <= 255:
        low, high = 0.0, 255.0
    elif low >= 0 and high <= 65535:
        low, high = 0.0, 65535.0
    # else: 32-bit data of no standard range, stretched to its own minimum and maximum
    scale = 255.0 / (high - low) if high > low else 0.0
    levels = (array.astype(np.float32) - np.float32(low)) * np.float32(scale) + np.float32(0.5)
    return Image.fromarray(levels.clip(0, 255, out=levels).astype(np.uint8), "L")


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode.startswith("I") or image.mode == "F":
        image = _to_8bit(image)
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
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
    try:  # JPEG: decode at 1/2, 1/4 or 1/8 scale while the longest side stays >= max_side / 2
        scale = max_side / 2 / max(image.size)
        image.draft("RGB", (max(1, int(image.size[0] * scale)), max(1, int(image.size[1] * scale))))
    except (OSError, ValueError) as error:
        raise ImageError(f"{name}: cannot be read ({type(error).__name__}: {error})") from None
    width, height = image.size
    if width * height > MAX_DECODED_PIXELS:
        raise ImageError(
            f"{name}: {width} x {height} pixels ({image.format or 'this format'}) is more than the "
            f"{MAX_DECODED_PIXELS / 1e6:.0f} megapixels decoded at full size; save it smaller or as JPEG"
        )
    try:
        image = ImageOps.exif_transpose(image)
        if max(image.size) > max_side and image.mode in ("RGB", "L", "RGBA", "CMYK"):
            image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)  # before any full-size copy
        image = _to_rgb(image)
    except MemoryError:
        raise ImageError(f"{name}: not enough memory to decode {width} x {height} pixels") from None
    except Exception as error:  # Pillow's decoders raise many types on damaged data; all mean the same here
        raise ImageError(f"{name}: image data is truncated or corrupt ({type(error).__name__}: {error})") from None
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8)
