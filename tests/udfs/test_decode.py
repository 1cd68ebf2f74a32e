"""Photo decoding: formats, colour conversions, orientation, and every error code."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.paths import LFW_DIR, read_bgr
from udfs.decode import ImageDecodeError, decode_image, probe_header

MAX_PIXELS = 40_000_000
LFW_PHOTO = LFW_DIR / "AJ_Cook" / "AJ_Cook_0001.jpg"


def _encode(image: np.ndarray, ext: str) -> bytes:
    ok, buffer = cv2.imencode(ext, image)
    assert ok
    return buffer.tobytes()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _error_code(data: bytes, max_pixels: int = MAX_PIXELS) -> str:
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data, max_pixels)
    return info.value.code


def test_lfw_jpeg_decodes_like_opencv() -> None:
    data = LFW_PHOTO.read_bytes()
    image = decode_image(data, MAX_PIXELS)
    assert (image.format, image.width, image.height) == ("JPEG", 250, 250)
    assert image.bgr.dtype == np.uint8 and image.bgr.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(image.bgr, read_bgr(LFW_PHOTO))
    assert probe_header(data) == ("JPEG", 250, 250)


@pytest.mark.parametrize("ext,fmt", [(".png", "PNG"), (".bmp", "BMP"), (".tiff", "TIFF"), (".webp", "WEBP")])
def test_other_formats_probe_and_decode(ext: str, fmt: str) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    data = _encode(pixels, ext)
    assert probe_header(data) == (fmt, 40, 30)
    image = decode_image(data, MAX_PIXELS)
    assert (image.format, image.width, image.height) == (fmt, 40, 30)


@pytest.mark.parametrize(
    "fmt,options", [("GIF", {}), ("WEBP", {"quality": 80}), ("WEBP", {"lossless": True}), ("TIFF", {})]
)
def test_pillow_encoded_formats(fmt: str, options: dict[str, object]) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (255, 0, 0)).save(buffer, fmt, **options)
    image = decode_image(buffer.getvalue(), MAX_PIXELS)
    assert (image.format, image.width, image.height) == (fmt, 40, 30)
    assert image.bgr[15, 20, 2] > 200 and image.bgr[15, 20, 0] < 60  # red survives


def test_greyscale_becomes_three_channels() -> None:
    image = decode_image(_encode(np.full((30, 40), 128, np.uint8), ".png"), MAX_PIXELS)
    assert image.bgr.shape == (30, 40, 3)
    assert np.all(image.bgr == 128)


def test_cmyk_jpeg_becomes_bgr() -> None:
    buffer = io.BytesIO()
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(buffer, "JPEG")  # pure red in CMYK
    image = decode_image(buffer.getvalue(), MAX_PIXELS)
    blue, green, red = image.bgr[15, 20].astype(int)
    assert image.bgr.shape == (30, 40, 3)
    assert red > 200 and blue < 60 and green < 60


def test_sixteen_bit_png_is_scaled_to_eight_bits() -> None:
    pixels = np.full((30, 40, 3), 40000, np.uint16)
    image = decode_image(_encode(pixels, ".png"), MAX_PIXELS)
    assert image.bgr.dtype == np.uint8
    assert abs(int(image.bgr[0, 0, 0]) - 40000 // 257) <= 1


def test_alpha_png_is_composited_on_white() -> None:
    pixels = np.zeros((30, 40, 4), np.uint8)
    pixels[10:20, 10:20] = (255, 0, 0, 255)  # opaque blue square on a transparent black background
    image = decode_image(_encode(pixels, ".png"), MAX_PIXELS)
    assert image.bgr.shape == (30, 40, 3)
    assert image.bgr[0, 0].tolist() == [255, 255, 255]
    assert image.bgr[15, 15].tolist() == [255, 0, 0]


def test_exif_orientation_is_applied() -> None:
    pixels = np.zeros((30, 40, 3), np.uint8)
    pixels[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", exif=exif.tobytes(), quality=95)
    data = buffer.getvalue()
    image = decode_image(data, MAX_PIXELS)
    assert (image.width, image.height) == (30, 40)
    assert probe_header(data) == ("JPEG", 30, 40)
    # the white left half ends up on top after a clockwise turn
    assert image.bgr[5, 15].mean() > 200 and image.bgr[35, 15].mean() < 50


def test_truncated_jpeg_is_corrupt() -> None:
    data = LFW_PHOTO.read_bytes()
    assert _error_code(data[: int(len(data) * 0.9)]) == "corrupt_image"
    assert _error_code(data[:-2]) == "corrupt_image"  # only the end-of-image marker missing


def test_truncated_png_is_corrupt() -> None:
    data = _encode(np.random.default_rng(1).integers(0, 255, (50, 50, 3), dtype=np.uint8), ".png")
    assert _error_code(data[:-12]) == "corrupt_image"


def test_text_empty_and_garbage() -> None:
    assert _error_code(b"name,identity\nalice,1\n") == "not_an_image"
    assert _error_code(b"BMW drivers, 2024 season results and standings\n") == "not_an_image"
    assert _error_code(b"") == "empty_file"
    assert _error_code(b"\xff\xd8\xff\xe0" + b"\x00" * 20) == "corrupt_image"


def test_huge_png_header_is_refused_without_decoding() -> None:
    ihdr = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))
    idat = _png_chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
    data = b"\x89PNG\r\n\x1a\n" + ihdr + idat + _png_chunk(b"IEND", b"")
    assert probe_header(data) == ("PNG", 20000, 20000)
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data, MAX_PIXELS)
    assert info.value.code == "too_many_pixels"
    assert "20000x20000" in info.value.detail


def test_max_pixels_is_enforced_on_small_images_too() -> None:
    data = LFW_PHOTO.read_bytes()
    assert _error_code(data, max_pixels=250 * 250 - 1) == "too_many_pixels"
