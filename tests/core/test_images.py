import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from core.images import MAX_SIDE, ImageError, load_image
from tests.conftest import noise_image


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_formats_decode_to_rgb(fmt):
    array = load_image(_encode(noise_image(0, 40), fmt))
    assert array.shape == (40, 40, 3) and array.dtype == np.uint8


@pytest.mark.parametrize(
    "mode", ["L", "CMYK", "RGBA", "P", "LA", "1"],
)
def test_modes_decode_to_rgb(mode):
    image = noise_image(1, 32).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    array = load_image(_encode(image, fmt))
    assert array.shape == (32, 32, 3)


def test_rgba_is_composited_on_white():
    transparent = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    assert load_image(_encode(transparent, "PNG"))[0, 0].tolist() == [255, 255, 255]


def test_16_bit_png_keeps_its_range():
    ramp = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    array = load_image(_encode(Image.fromarray(ramp), "PNG"))
    assert array.shape == (64, 64, 3)
    assert array.min() == 0 and array.max() == 255


def test_exif_rotation_is_applied():
    wide = Image.new("RGB", (60, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    array = load_image(_encode(wide, "JPEG", exif=exif))
    assert array.shape == (60, 20, 3)


def test_large_photo_is_downscaled():
    big = Image.new("RGB", (10_000, 5_000), (120, 80, 40))
    array = load_image(_encode(big, "JPEG", quality=50))
    assert max(array.shape[:2]) <= MAX_SIDE


def _png_with_size(width: int, height: int) -> bytes:
    data = bytearray(_encode(Image.new("L", (8, 8)), "PNG"))
    ihdr = bytearray(data[12:29])  # chunk type + 13 data bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


def test_decompression_bomb_is_refused():
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(_png_with_size(40_000, 40_000))


def test_truncated_file_fails_clearly():
    data = _encode(noise_image(2, 256), "JPEG")
    with pytest.raises(ImageError, match="truncated or corrupt|cannot be read"):
        load_image(data[: len(data) // 3])


def test_non_image_fails_clearly():
    with pytest.raises(ImageError, match="uploaded file: not an image file"):
        load_image(b"name,age\nalice,30\n")


def test_missing_file_fails_clearly(tmp_path):
    with pytest.raises(ImageError, match="file not found"):
        load_image(tmp_path / "nope.jpg")
