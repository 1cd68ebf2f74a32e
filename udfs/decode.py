"""Safe photo decoding: cheap header probe, pixel-count limit, truncation checks, then OpenCV.

Every photo is first probed by parsing its header bytes (PNG IHDR, JPEG SOF, BMP DIB header, GIF
logical screen, WebP VP8/VP8L/VP8X, TIFF IFD0) so that a decompression bomb is refused before any pixel
buffer is allocated. Only those six formats are accepted; anything else is ``not_an_image`` even if
OpenCV could read it, which keeps the attack surface to formats whose size we can check.

Failures raise `ImageDecodeError` with a stable ``code`` that ingest stores as data:
``empty_file``, ``not_an_image``, ``corrupt_image``, ``too_many_pixels``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

logger = logging.getLogger(__name__)

ErrorCode = Literal["empty_file", "not_an_image", "corrupt_image", "too_many_pixels"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_JPEG_STANDALONE = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})
_EXIF_ORIENTATION_TAG = 0x0112
_TIFF_WIDTH_TAG = 256
_TIFF_HEIGHT_TAG = 257
_BMP_DIB_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})


class ImageDecodeError(ValueError):
    """A photo that cannot be decoded; ``code`` is one of `ErrorCode`, ``detail`` a short reason."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code: ErrorCode = code
        self.detail = detail


@dataclass(frozen=True)
class DecodedImage:
    """A decoded photo.

    Attributes:
        bgr: uint8 array [height, width, 3], C-contiguous, BGR, EXIF orientation applied.
        width: Width after orientation.
        height: Height after orientation.
        format: ``"JPEG"``, ``"PNG"``, ``"BMP"``, ``"TIFF"``, ``"WEBP"`` or ``"GIF"``.
    """

    bgr: np.ndarray
    width: int
    height: int
    format: str


@dataclass(frozen=True)
class _Header:
    format: str
    width: int  # as displayed (JPEG EXIF orientation 5-8 swaps stored width/height)
    height: int
    has_alpha: bool = False
    scan_start: int = 0  # JPEG: offset of the first SOS marker; used by the truncation check


def _u16(data: bytes, pos: int, little: bool) -> int:
    return int.from_bytes(data[pos : pos + 2], "little" if little else "big")


def _u32(data: bytes, pos: int, little: bool) -> int:
    return int.from_bytes(data[pos : pos + 4], "little" if little else "big")


def _need(data: bytes, size: int, fmt: str) -> None:
    if len(data) < size:
        raise ImageDecodeError("corrupt_image", f"{fmt} header truncated ({len(data)} bytes)")


def _tiff_tags(data: bytes, wanted: set[int]) -> dict[int, int]:
    """Read SHORT/LONG values of ``wanted`` tags from IFD0 of a classic TIFF structure (also EXIF)."""
    little = data[:2] == b"II"
    ifd = _u32(data, 4, little)
    _need(data, ifd + 2, "TIFF")
    count = _u16(data, ifd, little)
    found: dict[int, int] = {}
    for i in range(count):
        entry = ifd + 2 + 12 * i
        if entry + 12 > len(data):
            break
        tag, kind = _u16(data, entry, little), _u16(data, entry + 2, little)
        if tag in wanted and kind in (3, 4):
            found[tag] = _u16(data, entry + 8, little) if kind == 3 else _u32(data, entry + 8, little)
    return found


def _jpeg_orientation(segment: bytes) -> int:
    """EXIF orientation (1-8) from an APP1 segment body, 1 when absent or unreadable."""
    if not segment.startswith(b"Exif\x00\x00") or segment[6:8] not in (b"II", b"MM"):
        return 1
    try:
        return _tiff_tags(segment[6:], {_EXIF_ORIENTATION_TAG}).get(_EXIF_ORIENTATION_TAG, 1)
    except ImageDecodeError:
        return 1


def _probe_jpeg(data: bytes) -> _Header:
    pos, size, orientation = 2, None, 1
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ImageDecodeError("corrupt_image", f"JPEG marker expected at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        seg_len = _u16(data, pos + 2, little=False)
        if marker == 0xDA:
            if size is None:
                raise ImageDecodeError("corrupt_image", "JPEG scan before frame header")
            width, height = size if orientation < 5 else size[::-1]
            return _Header("JPEG", width, height, scan_start=pos)
        if marker == 0xD9:
            break
        if marker in _JPEG_SOF:
            _need(data, pos + 9, "JPEG")
            size = (_u16(data, pos + 7, little=False), _u16(data, pos + 5, little=False))
        elif marker == 0xE1:
            orientation = _jpeg_orientation(data[pos + 4 : pos + 2 + seg_len])
        pos += 2 + seg_len
    raise ImageDecodeError("corrupt_image", "JPEG ends before its first scan")


def _probe_png(data: bytes) -> _Header:
    _need(data, 33, "PNG")
    if data[12:16] != b"IHDR":
        raise ImageDecodeError("corrupt_image", "PNG does not start with IHDR")
    colour_type = data[25]
    return _Header("PNG", _u32(data, 16, False), _u32(data, 20, False), has_alpha=colour_type in (4, 6))


def _probe_bmp(data: bytes) -> _Header:
    _need(data, 26, "BMP")
    dib_size = _u32(data, 14, True)
    if dib_size not in _BMP_DIB_SIZES:  # "BM" alone is too weak a signature (text can start with it)
        raise ImageDecodeError("not_an_image", f"'BM' signature with unknown DIB header size {dib_size}")
    if dib_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        return _Header("BMP", _u16(data, 18, True), _u16(data, 20, True))
    width = int.from_bytes(data[18:22], "little", signed=True)
    height = int.from_bytes(data[22:26], "little", signed=True)  # negative = top-down rows
    return _Header("BMP", width, abs(height))


def _probe_webp(data: bytes) -> _Header:
    _need(data, 30, "WEBP")
    chunk = data[12:16]
    if chunk == b"VP8X":
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
        return _Header("WEBP", width, height, has_alpha=bool(data[20] & 0x10))
    if chunk == b"VP8L":
        if data[20] != 0x2F:
            raise ImageDecodeError("corrupt_image", "bad VP8L signature")
        bits = _u32(data, 21, True)
        return _Header(
            "WEBP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, has_alpha=bool(bits >> 28 & 1)
        )
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise ImageDecodeError("corrupt_image", "bad VP8 start code")
        return _Header("WEBP", _u16(data, 26, True) & 0x3FFF, _u16(data, 28, True) & 0x3FFF)
    raise ImageDecodeError("corrupt_image", f"unknown WebP chunk {chunk!r}")


def _probe_tiff(data: bytes) -> _Header:
    _need(data, 8, "TIFF")
    tags = _tiff_tags(data, {_TIFF_WIDTH_TAG, _TIFF_HEIGHT_TAG})
    if len(tags) != 2:
        raise ImageDecodeError("corrupt_image", "TIFF IFD0 lacks width/height")
    return _Header("TIFF", tags[_TIFF_WIDTH_TAG], tags[_TIFF_HEIGHT_TAG])


def _probe(data: bytes) -> _Header:
    if not data:
        raise ImageDecodeError("empty_file", "0 bytes")
    if data.startswith(b"\xff\xd8\xff"):
        header = _probe_jpeg(data)
    elif data.startswith(PNG_SIGNATURE):
        header = _probe_png(data)
    elif data.startswith(b"BM"):
        header = _probe_bmp(data)
    elif data.startswith((b"GIF87a", b"GIF89a")):
        _need(data, 10, "GIF")
        header = _Header("GIF", _u16(data, 6, True), _u16(data, 8, True))
    elif data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        header = _probe_webp(data)
    elif data.startswith((b"II*\x00", b"MM\x00*")):
        header = _probe_tiff(data)
    else:
        raise ImageDecodeError("not_an_image", f"unrecognised signature {data[:8].hex()}")
    if header.width <= 0 or header.height <= 0:
        raise ImageDecodeError(
            "corrupt_image", f"{header.format} declares size {header.width}x{header.height}"
        )
    return header


def probe_header(data: bytes) -> tuple[str, int, int]:
    """Read format and size from the header bytes only, without decoding pixels.

    For JPEG the size is as displayed (EXIF orientation 5-8 swaps width and height), matching
    `decode_image`. The pixel data is not checked: a header can be valid on a truncated file.

    Args:
        data: The file's bytes.

    Returns:
        (format, width, height), format one of JPEG, PNG, BMP, GIF, WEBP, TIFF.

    Raises:
        ImageDecodeError: ``empty_file``, ``not_an_image`` or ``corrupt_image`` (unreadable header).
    """
    header = _probe(data)
    return header.format, header.width, header.height


def _png_chunks_complete(data: bytes) -> tuple[bool, bool]:
    """Walk PNG chunks by their lengths; return (reached IEND, saw tRNS transparency)."""
    pos, has_trns = 8, False
    while pos + 8 <= len(data):
        length = _u32(data, pos, little=False)
        kind = data[pos + 4 : pos + 8]
        if kind == b"IEND":
            return True, has_trns
        has_trns = has_trns or kind == b"tRNS"
        pos += 12 + length
    return False, has_trns


def _check_complete(data: bytes, header: _Header) -> _Header:
    """Reject truncated files OpenCV might decode partially; return the header with alpha refined."""
    if header.format == "JPEG" and data.rfind(b"\xff\xd9") <= header.scan_start:
        raise ImageDecodeError("corrupt_image", "JPEG has no end-of-image marker after its scan (truncated)")
    if header.format == "PNG":
        complete, has_trns = _png_chunks_complete(data)
        if not complete:
            raise ImageDecodeError("corrupt_image", "PNG has no IEND chunk (truncated)")
        if has_trns and not header.has_alpha:
            return _Header(header.format, header.width, header.height, has_alpha=True)
    if header.format == "WEBP" and len(data) < _u32(data, 4, little=True) + 8:
        raise ImageDecodeError("corrupt_image", "WebP shorter than its RIFF size (truncated)")
    if header.format == "GIF" and not data.rstrip(b"\x00").endswith(b";"):
        raise ImageDecodeError("corrupt_image", "GIF has no trailer (truncated)")
    return header


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return np.round(image.astype(np.float32) / 257.0).astype(np.uint8)
    return np.clip(image, 0, 255).astype(np.uint8)


def _flatten_alpha(image: np.ndarray) -> np.ndarray:
    """Any-channel 8/16-bit image to BGR uint8, compositing transparency on white."""
    image = _to_uint8(image)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 3:
        return image
    if image.shape[2] != 4:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    alpha = image[:, :, 3:4].astype(np.float32) / 255.0
    composite = image[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
    return np.round(composite).astype(np.uint8)


def decode_image(data: bytes, max_pixels: int) -> DecodedImage:
    """Decode a photo to BGR uint8 after checking its header size and completeness.

    Greyscale and CMYK become BGR, 16-bit samples are scaled to 8 bits, EXIF orientation is applied
    (OpenCV's ``IMREAD_COLOR`` does this). Images with an alpha channel (PNG colour types 4/6 or tRNS,
    WebP with alpha) are read unchanged and composited on white, since dropping alpha often leaves a
    black background; OpenCV ignores orientation on that path, which only matters for the rare PNG/WebP
    with EXIF orientation.

    Args:
        data: The file's bytes.
        max_pixels: Largest width*height accepted, checked on the header before decoding.

    Returns:
        The decoded image.

    Raises:
        ImageDecodeError: ``empty_file``, ``not_an_image``, ``corrupt_image``, ``too_many_pixels``.
        ValueError: ``max_pixels`` < 1.
    """
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    header = _probe(data)
    if header.width * header.height > max_pixels:
        raise ImageDecodeError(
            "too_many_pixels", f"{header.width}x{header.height} exceeds the limit of {max_pixels} pixels"
        )
    header = _check_complete(data, header)
    buffer = np.frombuffer(data, dtype=np.uint8)
    try:
        if header.has_alpha:
            raw = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
            bgr = None if raw is None else _flatten_alpha(raw)
        else:
            bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageDecodeError("corrupt_image", f"OpenCV failed on {header.format}: {exc}") from exc
    if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.size == 0:
        raise ImageDecodeError("corrupt_image", f"OpenCV could not decode this {header.format}")
    height, width = bgr.shape[:2]
    if width * height > max_pixels:
        raise ImageDecodeError("too_many_pixels", f"decoded {width}x{height} exceeds {max_pixels} pixels")
    return DecodedImage(bgr=np.ascontiguousarray(bgr), width=width, height=height, format=header.format)
