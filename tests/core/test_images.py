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


def test_large_png_is_refused_before_decoding():
    # The case: 10,900 x 10,900 at 16 bits passed the bomb check and held ~5 GB once decoded.
    with pytest.raises(ImageError, match="megapixels decoded at full size"):
        load_image(_png_with_size(10_900, 10_900))


def test_huge_jpeg_is_decoded_at_reduced_scale():
    array = load_image(_encode(Image.new("RGB", (9000, 6000), (90, 80, 70)), "JPEG"))
    assert MAX_SIDE // 2 <= max(array.shape[:2]) <= MAX_SIDE


GRADIENT = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (16, 1))


@pytest.mark.parametrize("name, pixels", [
    ("16-bit", (GRADIENT * 65535).astype(np.uint16)),
    ("32-bit integer", (GRADIENT * 4e9 - 2e9).astype(np.int32)),
    ("32-bit integer 0-255", (GRADIENT * 255).astype(np.int32)),
    ("float 0-1", GRADIENT),
    ("float wide range", GRADIENT * 1e6 - 5e5),
])
def test_deep_images_keep_their_grey_levels(name, pixels):
    # 32-bit TIFFs used to decode all black or all white.
    grey = load_image(_encode(Image.fromarray(pixels), "TIFF"))[..., 0]
    assert grey[0, 0] == 0 and grey[0, -1] == 255 and 120 < grey[0, 32] < 140, name


def test_float_image_with_nan_decodes():
    pixels = GRADIENT.copy()
    pixels[0, :4] = np.nan
    assert load_image(_encode(Image.fromarray(pixels), "TIFF")).shape == (16, 64, 3)


def test_empty_image_is_refused():
    with pytest.raises(ImageError, match="not an image file|0 x 8 pixels"):
        load_image(_png_with_size(0, 8))
